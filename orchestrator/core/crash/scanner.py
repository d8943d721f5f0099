"""The console, read once from start to end: boots, and the reports each boot printed.

A report opens at a start line (``rules.RULES``) and gathers the kernel lines after it until one
of: its end marker (``---[ end trace``; a panic printed within the next lines still joins it), a
new report's first line, a new boot, a pause of more than ``_GAP_S`` in kernel time, or
``_MAX_LINES``. User-space lines in between (no timestamp, systemd status) are left out. With printk
caller ids (``[ T123]``) each task and CPU has its own open report, so the lines of two CPUs that
crash at once are told apart.

While no report is open the scanner reads only lines that hold a keyword; memory stays bounded by
the caps on lines per report and reports per boot.
"""

import re
from dataclasses import dataclass, field

from orchestrator.core.crash.frames import parse_frame
from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.lines import (
    MAX_LINE_CHARS,
    ConsoleLine,
    Keyword,
    KeywordFinder,
    has_timestamp,
    safe_text,
    split_physical,
)
from orchestrator.core.crash.report import CrashReport
from orchestrator.core.crash.start_rule import FINDER_KEYWORDS, FINDER_REFINEMENTS, Start
from orchestrator.core.crash.starts import match_start, may_start
from orchestrator.core.crash.titles import ReportLines, build_report

_BANNER = "Linux version "
_CAPTURE_KERNEL = "elfcorehdr="  # on the command line of a kdump capture kernel
KEYWORDS: tuple[Keyword, ...] = (
    *(FINDER_REFINEMENTS.get(keyword, keyword) for keyword in FINDER_KEYWORDS),
    _BANNER,
    _CAPTURE_KERNEL,
)
_BANNER_BY_S = 10.0
_GAP_S = 10.0  # a report prints within milliseconds; a longer pause means it is over
_MAX_LINES = 400
_TRAILER_LINES = 40  # after "---[ end trace": registers printed again, then the panic it caused
_MAX_EXCERPT_CHARS = 1024
_MAX_REPORTS_PER_BOOT = 500  # beyond that, only reports that mean a broken kernel are kept
_CHATTER = re.compile(r"^(?:[\w.@-]+\[\d+\]: |\[\s*(?:OK|FAILED|DEPEND|TIME|\*+)\s*\] |[\w.-]+ login: )")
_END_MARKER = "---[ end "
_LOOKBACK = 65536  # how much console before the first banner is searched for kernel output
_CHECK_MESSAGES = frozenset({CrashKind.LIST_CORRUPTION, CrashKind.REFCOUNT})
_CHECK_HEADERS = frozenset({CrashKind.WARNING, CrashKind.KERNEL_BUG})
_SEPARATOR = "=" * 40


@dataclass
class _Open:
    """A report still gathering lines."""

    start: Start
    key: str | None  # the printk caller it belongs to (None without caller ids)
    boot: int
    order: int
    lines: list[ConsoleLine] = field(default_factory=list)
    panic_lines: list[int] = field(default_factory=list)
    panic_reason: str | None = None
    excerpt: list[str] = field(default_factory=list)
    last_physical: int = -1
    last_seconds: float | None = None
    timestamped: bool = False
    ended: bool = False  # its end marker was printed
    trailer: list[tuple[ConsoleLine, str]] = field(default_factory=list)
    has_stack: bool = False
    finished: bool = False
    cpu_backtraces: bool = False  # "Sending NMI from CPU": other CPUs' lines belong to it too

    def take(self, line: ConsoleLine, raw: str, excerpt_lines: int) -> None:
        self.lines.append(line)
        if line.physical != self.last_physical and len(self.excerpt) < excerpt_lines:
            self.excerpt.append(safe_text(raw).rstrip()[:_MAX_EXCERPT_CHARS])
        self.last_physical = line.physical
        if line.seconds is not None:
            self.last_seconds = line.seconds
            self.timestamped = True


class ConsoleScanner:
    """Feed it blocks of console text in order, then ``finish()``."""

    def __init__(
        self, *, boots_before: int = 0, last_boots_only: bool = False, excerpt_lines: int = 120
    ) -> None:
        self._banners = boots_before
        self._leading_banner = boots_before > 0  # the first banner had only firmware output before it
        self._kernel_output_seen = False
        self._stamped = False  # a kernel timestamp was read: from now on a banner must carry one
        self._last_boots_only = last_boots_only
        self._excerpt_lines = excerpt_lines
        self._open: dict[str | None, _Open] = {}
        self._contexts = False
        self._order = 0
        self._offset = 0
        self._block = ""
        self._reports: dict[int, list[tuple[int, CrashReport]]] = {}
        self.capture_boots: set[int] = set()

    @property
    def boot(self) -> int:
        return max(0, self._banners - (1 if self._leading_banner else 0))

    def feed(self, block: str, *, final: bool = False) -> None:
        self._block = block
        finder = KeywordFinder(block, KEYWORDS)
        position, size = 0, len(block)
        while position < size:
            if not self._open:
                found = finder.next_line_start(position)
                if found is None:
                    break
                position = found
            end = block.find("\n", position)
            last = end < 0
            end = size if last else end
            raw = block[position : min(end, position + MAX_LINE_CHARS)]
            if not self._open and not (may_start(raw) or _BANNER in raw or _CAPTURE_KERNEL in raw):
                position = end + 1  # a keyword, but in nothing a report starts with ("BUG count 0")
                continue
            for line in split_physical(raw, self._offset + position, last and final):
                self._line(line, raw)
            position = end + 1
        if self._banners == 0 and not self._kernel_output_seen:
            self._kernel_output_seen = has_timestamp(block, 0, min(size, _LOOKBACK))
        self._offset += size

    def finish(self) -> list[CrashReport]:
        """Every report kept, in the order they started."""
        for report in list(self._open.values()):
            self._close(report)
        return [report for boot in sorted(self._reports) for _order, report in sorted(self._reports[boot])]

    @property
    def last_boot(self) -> int:
        return self.boot

    def _line(self, line: ConsoleLine, raw: str) -> None:
        text = line.text
        if _is_banner(line, stamped_console=self._stamped):
            self._new_boot(line)
            return
        self._stamped = self._stamped or line.seconds is not None
        if _CAPTURE_KERNEL in text:
            self.capture_boots.add(self.boot)
        if line.context is not None:
            self._contexts = True
        key = line.context if self._contexts else None
        report = self._route(key)
        if report is not None and self._expired(report, line):
            self._close(report)
            report = None
        start = match_start(text)
        if start is not None:
            self._kernel_output_seen = True
            if report is not None and self._absorbs(report, start):
                self._continue(report, line, raw, start)
            else:
                if report is not None and report.key == key:
                    self._close(report)
                report = self._begin(key, start, line, raw)
        elif report is not None:
            self._continue(report, line, raw, None)
        if report is not None and report.finished:
            self._close(report)

    def _route(self, key: str | None) -> _Open | None:
        report = self._open.get(key)
        if report is None and key is not None and key.startswith("C"):
            return next((r for r in self._open.values() if r.cpu_backtraces), None)
        return report

    def _expired(self, report: _Open, line: ConsoleLine) -> bool:
        if line.seconds is None or report.last_seconds is None:
            return False
        return not -1.0 <= line.seconds - report.last_seconds <= _GAP_S  # CPUs stamp a little out of order

    def _absorbs(self, report: _Open, start: Start) -> bool:
        """Whether a start line continues the open report rather than starting its own."""
        if report.ended:
            return start.rule.panic
        if start.rule.companion:
            return True
        pair = {report.start.kind, start.kind}
        # The message of a list/refcount check and its WARNING/BUG line, in either order.
        return not report.has_stack and len(pair & _CHECK_MESSAGES) == 1 and len(pair & _CHECK_HEADERS) == 1

    def _begin(self, key: str | None, start: Start, line: ConsoleLine, raw: str) -> _Open:
        report = _Open(start, key, self.boot, self._order)
        self._order += 1
        self._open[key] = report
        self._continue(report, line, raw, start)
        return report

    def _continue(self, report: _Open, line: ConsoleLine, raw: str, start: Start | None) -> None:
        if report.ended:
            if start is None:
                report.trailer.append((line, raw))
                report.finished = len(report.trailer) > _TRAILER_LINES
                return
            for held, held_raw in report.trailer:  # a panic followed: the lines between belong too
                report.take(held, held_raw, self._excerpt_lines)
            report.trailer.clear()
            report.ended = False
        if self._foreign(report, line):  # user space writing to the same console: not the kernel's report
            return
        if start is not None and start.rule.panic and report.panic_reason is None:
            report.panic_lines.append(len(report.lines))
            report.panic_reason = _panic_reason(line.text)
        report.take(line, raw, self._excerpt_lines)
        self._watch(report, line.text)

    def _foreign(self, report: _Open, line: ConsoleLine) -> bool:
        return (report.timestamped and line.seconds is None) or _CHATTER.match(line.text) is not None

    def _watch(self, report: _Open, text: str) -> None:
        stripped = text.lstrip()
        if not report.has_stack and len(report.lines) > 1:
            report.has_stack = stripped.startswith("Call ") or parse_frame(stripped) is not None
        if _END_MARKER in text:
            if "end Kernel panic" in text:
                report.finished = True
            else:
                report.ended = True
        elif report.has_stack and stripped.startswith(_SEPARATOR):  # KASAN, UBSAN, KMSAN end this way
            report.ended = True
        elif "Sending NMI from CPU" in text:
            report.cpu_backtraces = True
        if len(report.lines) >= _MAX_LINES:
            report.finished = True

    def _close(self, report: _Open) -> None:
        del self._open[report.key]
        built = build_report(
            ReportLines(
                start=report.start,
                lines=report.lines,
                panic_lines=tuple(report.panic_lines),
                panic_reason=report.panic_reason,
                excerpt=tuple(report.excerpt),
                boot=report.boot,
            )
        )
        kept = self._reports.setdefault(report.boot, [])
        if len(kept) < _MAX_REPORTS_PER_BOOT or (built.fatal and len(kept) < 2 * _MAX_REPORTS_PER_BOOT):
            kept.append((report.order, built))

    def _new_boot(self, line: ConsoleLine) -> None:
        for report in list(self._open.values()):
            self._close(report)
        if self._banners == 0:
            at = line.physical - self._offset
            before = self._kernel_output_seen or has_timestamp(self._block, max(0, at - _LOOKBACK), at)
            self._leading_banner = not before
        self._banners += 1
        self._contexts = False
        if self._last_boots_only:
            for old in [boot for boot in self._reports if boot < self.boot - 1]:
                del self._reports[old]


def _is_banner(line: ConsoleLine, *, stamped_console: bool) -> bool:
    """The kernel's first line, "Linux version 6.1.0-...", printed at time zero.

    "cat /proc/version" prints the same text, but later, and without a timestamp in a console that
    has them.
    """
    text = line.text
    if not (text.startswith(_BANNER) and text[len(_BANNER) : len(_BANNER) + 1].isdigit()):
        return False
    return line.seconds < _BANNER_BY_S if line.seconds is not None else not stamped_console


def _panic_reason(text: str) -> str:
    return text.split("not syncing:", 1)[1].strip()
