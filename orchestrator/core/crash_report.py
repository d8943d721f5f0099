"""Linux kernel crash reports read from a serial console log (the parser lives in ``crash/``).

This module keeps the names the rest of the engine imports.
"""

from orchestrator.core.crash import (
    DEFAULT_MAX_BYTES,
    CrashKind,
    CrashReport,
    find_reports,
    find_reports_in_file,
    parse_console,
    parse_console_file,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CrashKind",
    "CrashReport",
    "find_reports",
    "find_reports_in_file",
    "parse_console",
    "parse_console_file",
]
