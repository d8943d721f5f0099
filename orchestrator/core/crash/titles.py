"""From a report's lines to a CrashReport: the guilty frame, the normalized title, corruption.

The title is the kind's words plus `` in <function>`` and `` [<module>]`` of the guilty frame, so
it carries no address, offset, PID, CPU number or timestamp: the same bug on two cells gives the
same title. When the report does not let us name the function with confidence (it was cut, or its
stack is missing) the title keeps only the words and the report is flagged ``corrupted``.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.core.crash.body import Body, Located, read_body
from orchestrator.core.crash.frames import HANG_SKIP, LEAK_SKIP, STALL_SKIP, Frame, is_skipped, parse_site
from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.lines import ConsoleLine
from orchestrator.core.crash.normalize import tidy
from orchestrator.core.crash.report import CrashReport
from orchestrator.core.crash.starts import Start, Strategy

_PURE_ADDRESS = re.compile(r"[0-9a-fA-F]{8,}")
_EXTRA_SKIP: dict[Strategy, re.Pattern[str]] = {
    Strategy.HANG: HANG_SKIP,
    Strategy.INTERRUPTED: STALL_SKIP,
    Strategy.LEAK: LEAK_SKIP,
}


@dataclass(frozen=True)
class ReportLines:
    """What the scanner gathered for one report."""

    start: Start
    lines: Sequence[ConsoleLine]  # the report's kernel lines, the start line first
    panic_lines: tuple[int, ...]  # indexes in ``lines`` of the panic lines it absorbed
    panic_reason: str | None
    excerpt: tuple[str, ...]
    boot: int


def _header_site(start: Start) -> Frame | None:
    site = start.group("site")
    if not site:
        return None
    frame = parse_site(site) or _bare_name(site)
    if frame is None or _PURE_ADDRESS.fullmatch(frame.function):
        return None  # "corrupted in: ffffffffa0123456": the kernel could not name it
    return frame


def _bare_name(site: str) -> Frame | None:
    """``memcpy include/linux/string.h:12 [inline]`` or a name alone, as KASAN prints inlined sites."""
    name = re.match(r"\s*([A-Za-z_][\w.]*)(?=\s|$|,)", site)
    return Frame(name.group(1).split(".", 1)[0]) if name else None


def _in(frames: Iterable[Located], sections: set[int], source: str | None = None) -> list[Frame]:
    return [f.frame for f in frames if f.section in sections and (source is None or f.source == source)]


def _first_trace(body: Body, after_panic: bool) -> set[int]:
    for index, section in enumerate(body.sections):
        if section.kind == "trace" and section.after_panic == after_panic:
            return {index}
    return set()


def _fault(body: Body, after_panic: bool) -> list[Frame]:
    sections = {i for i, s in enumerate(body.sections) if s.after_panic == after_panic and s.kind != "aux"}
    sites = _in(body.frames, sections, "site")[:1]
    return sites + _in(body.frames, _first_trace(body, after_panic), "trace")


def _stack(body: Body, after_panic: bool) -> list[Frame]:
    trace = _first_trace(body, after_panic)
    if not trace:  # KMSAN prints its stack right under the first line; kmemleak under "backtrace:"
        trace = {i for i, s in enumerate(body.sections) if s.after_panic == after_panic and s.kind == "head"}
    return _in(body.frames, trace, "trace")


def _interrupted(body: Body) -> list[Frame]:
    for position, located in enumerate(body.frames):
        if located.source == "site":
            following = body.frames[position + 1 :]
            stop = next((i for i, f in enumerate(following) if f.source == "site"), len(following))
            return [located.frame] + [f.frame for f in following[:stop] if f.source == "trace"]
    return [f.frame for f in body.frames if f.after_interrupt and f.source == "trace"]


def _candidates(strategy: Strategy, body: Body, header: Frame | None) -> list[Frame]:
    """The frames the strategy reads, in the order it reads them; the first unskipped one is guilty."""
    head = [header] if header else []
    match strategy:
        case Strategy.FAULT:
            return _fault(body, after_panic=False) or _fault(body, after_panic=True)
        case Strategy.WARNING:
            return head + (_fault(body, after_panic=False) or _fault(body, after_panic=True))
        case Strategy.HEADER:
            return head + _stack(body, after_panic=False)
        case Strategy.STACK | Strategy.HANG | Strategy.LEAK:
            return _stack(body, after_panic=False) or _stack(body, after_panic=True)
        case Strategy.INTERRUPTED:
            return _interrupted(body) + _stack(body, after_panic=False)
        case Strategy.LOCKDEP:
            return [f.frame for f in body.frames if f.source == "lock"] + _stack(body, after_panic=False)
        case Strategy.PANIC:
            return head + _fault(body, after_panic=True)
    return []


def guilty_frame(strategy: Strategy, body: Body, header: Frame | None) -> Frame | None:
    extra = _EXTRA_SKIP.get(strategy)
    return next((f for f in _candidates(strategy, body, header) if not is_skipped(f, extra)), None)


def _refined(start: Start, body: Body) -> tuple[CrashKind, str]:
    """A WARNING or BUG that is really a list or refcount_t check says so in its kind and title."""
    kind, words = start.kind, start.rule.words(start.match)
    source = start.group("src") or ""
    if kind in (CrashKind.WARNING, CrashKind.KERNEL_BUG):
        if body.list_op or source.endswith("lib/list_debug.c"):
            return CrashKind.LIST_CORRUPTION, f"{body.list_op or 'list'} corruption"
        if body.refcount_problem or source.endswith("lib/refcount.c"):
            return CrashKind.REFCOUNT, "refcount_t: " + tidy(body.refcount_problem or "bug")
    if kind is CrashKind.KASAN and body.access and "invalid-free" not in words:
        words = f"{words} {body.access}"
    return kind, words


def _corruption(report: ReportLines, body: Body, guilty: Frame | None) -> str | None:
    rule = report.start.rule
    if rule.corrupted:
        return rule.corrupted
    what = report.start.group("what")
    if rule.free_text and (report.lines[0].cut or (what is not None and not what.strip())):
        return "the first line of the report is cut"
    if rule.needs_site and rule.strategy is not Strategy.NONE and guilty is None:
        if not body.has_stack():
            return "the report ends before its stack trace"
        return "no frame of the report names a culprit"
    return None


def build_report(report: ReportLines) -> CrashReport:
    """The CrashReport for what the scanner gathered."""
    start = report.start
    body = read_body(report.lines, report.panic_lines)
    guilty = guilty_frame(start.rule.strategy, body, _header_site(start))
    kind, words = _refined(start, body)
    reason = _corruption(report, body, guilty)
    title = words
    if guilty is not None:
        title += f" in {guilty.function}" + (f" [{guilty.module}]" if guilty.module else "")
    first = report.lines[0]
    return CrashReport(
        kind=kind,
        title=title,
        first_line=first.text,
        function=guilty.function if guilty else None,
        module=guilty.module if guilty else None,
        panic_reason=report.panic_reason,
        tainted=body.tainted,
        modules_linked=body.modules_linked,
        excerpt=report.excerpt,
        boot=report.boot,
        uptime_s=first.seconds,
        corrupted=reason is not None,
        corrupted_reason=reason,
        kernel_died=body.died or report.panic_reason is not None,
    )
