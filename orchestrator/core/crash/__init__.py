"""Linux kernel reports read from serial console logs, in the manner of syzkaller's pkg/report.

``find_reports`` lists every report of every boot (a health probe judges the new ones after each
boot); ``parse_console`` names the one that brought the last boot down. Both read the console once,
in linear time and bounded memory. Titles are normalized (kind words, guilty function, module) so
that the same bug on different cells and kernels groups under one title.
"""

from orchestrator.core.crash.console import (
    DEFAULT_MAX_BYTES,
    find_reports,
    find_reports_in_file,
    parse_console,
    parse_console_file,
)
from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.report import CrashReport

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CrashKind",
    "CrashReport",
    "find_reports",
    "find_reports_in_file",
    "parse_console",
    "parse_console_file",
]
