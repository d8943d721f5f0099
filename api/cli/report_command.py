"""``testbed report CONSOLE.log``: the kernel report in any console log, as the gate would title it.

Works on logs from anywhere: a serial console, ``dmesg``, ``journalctl -k``, ``/var/log/kern.log``.
Only the last 64 MiB of the file are read. Exit codes: 0 no report, 1 a report (the console shows
a kernel in trouble), 3 the file cannot be read.
"""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOption, errors_as_exit_codes
from orchestrator.core.crash_report import CrashReport, find_reports_in_file, parse_console_file
from orchestrator.errors import ConfigurationError

EXIT_REPORT = 1


def _describe(report: CrashReport) -> str:
    """A few lines for people: the title first, then what it rests on."""
    lines = [report.title, f"  kind: {report.kind} ({'kernel broken' if report.fatal else 'kernel ran on'})"]
    if report.function:
        module = f"  module: {report.module}" if report.module else ""
        lines.append(f"  function: {report.function}{module}")
    when = f" at {report.uptime_s:.6f} s" if report.uptime_s is not None else ""
    lines.append(f"  boot: {report.boot}{when}")
    lines.append(f"  first line: {report.first_line}")
    if report.panic_reason:
        lines.append(f"  panic: {report.panic_reason}")
    if report.tainted:
        lines.append(f"  tainted: {report.tainted}")
    if report.corrupted:
        lines.append(f"  corrupted: {report.corrupted_reason}")
    lines.extend(f"  also in that boot: {title}" for title in report.others)
    return "\n".join(lines) + "\n"


def _read(console_log: Path, every: bool) -> list[CrashReport]:
    try:
        if every:
            return find_reports_in_file(console_log)
        found = parse_console_file(console_log, latest_down=True)  # the report the gate's crash.json has
    except OSError as exc:
        raise ConfigurationError(f"console log {console_log}: {exc.strerror or exc}") from exc
    return [found] if found else []


def report(
    console_log: Annotated[Path, typer.Argument(help="A console log: serial console, dmesg, kern.log.")],
    every: Annotated[
        bool, typer.Option("--all", help="Every report of every boot, not only the one ending the last boot.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """The kernel report that brought the last boot down (or, when the guest came back up, the
    latest boot that went down), or every report, titled as the gate titles it."""
    with errors_as_exit_codes():
        if not console_log.is_file():
            raise ConfigurationError(f"console log {console_log}: no such file")
        reports = _read(console_log, every)
    if json_output:
        data = [r.as_dict() for r in reports] if every else (reports[0].as_dict() if reports else None)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif not reports:
        sys.stdout.write(f"no kernel report in {console_log}\n")
    else:
        sys.stdout.write("\n".join(_describe(r) for r in reports))
    if reports:
        raise typer.Exit(EXIT_REPORT)
