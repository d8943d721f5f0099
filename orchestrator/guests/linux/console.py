"""The Linux serial console as evidence: kernel reports found in it, bounded in size."""

from pathlib import Path
from typing import Any

from orchestrator.core.crash_report import find_reports_in_file, parse_console_file
from orchestrator.core.probe_rules import ConsoleFinding


def console_findings(console_log: Path) -> tuple[ConsoleFinding, ...]:
    """Every kernel report of every boot so far (a probe judges the ones it has not seen)."""
    return tuple(
        ConsoleFinding(title=report.title, fatal=report.fatal, boot=report.boot, module=report.module)
        for report in find_reports_in_file(console_log)
    )


def console_crash_report(console_log: Path) -> dict[str, Any] | None:
    """The report that brought the last boot down (or, when the guest came back up after crashing,
    the latest boot that went down), as JSON-ready evidence."""
    report = parse_console_file(console_log, latest_down=True)
    return None if report is None else dict(report.as_dict())
