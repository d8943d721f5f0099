"""From a report's lines to a CrashReport: the guilty frame, the normalized title, corruption.

The title is the kind's words plus `` in <function>`` and `` [<module>]`` of the guilty frame, so
it carries no address, offset, PID, CPU number or timestamp: the same bug on two cells gives the
same title. When the report does not let us name the function with confidence (it was cut, or its
stack is missing) the title keeps only the words and the report is flagged ``corrupted``.
"""

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from orchestrator.core.crash.body import Body, Located, read_body
from orchestrator.core.crash.frames import (
    HANG_BUCKETS,
    STALL_ANCHORS,
    Frame,
    SkipList,
    parse_site,
    substrings,
)
from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.lines import ConsoleLine
from orchestrator.core.crash.normalize import tidy
from orchestrator.core.crash.report import CrashReport
from orchestrator.core.crash.start_rule import Start, StartRule, Strategy

_PURE_ADDRESS = re.compile(r"[0-9a-fA-F]{8,}")
_DROPPED = "the kernel dropped messages inside the report"
_INTERLEAVED = "the lines of two CPUs or tasks are interleaved"
_LINES_UNRELIABLE = (_DROPPED, _INTERLEAVED)  # any frame may be another report's: no guess either
_BARE_NAME = re.compile(r"\s*([A-Za-z_][\w.]*)(?=\s|$|,)")
# WARNINGs printed by kernel checks on behalf of their callers: what they are, and what to look past.
_WARNING_SOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lib/debugobjects.c", "WARNING: ODEBUG bug",
     ("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree", "__free_", "kobject_")),
    ("mm/usercopy.c", "WARNING: bad usercopy", ("usercopy", "__check")),
    ("lib/kobject.c", "WARNING: kobject bug", ("kobject_",)),
    ("fs/proc/generic.c", "WARNING: proc registration bug", ("proc_",)),
    ("kernel/locking/lockdep.c", "WARNING: locking bug", ("lock_sock", "release_sock")),
    ("mm/slab_common.c", "WARNING: kmalloc bug", ("kmalloc", "krealloc", "slab", "kmem")),
    ("mm/page_alloc.c", "WARNING: kmalloc bug", ("kmalloc", "krealloc", "slab", "kmem")),
    ("drivers/usb/core/urb.c", "WARNING", ("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                                           "usb_interrupt_msg", "usb_control_msg")),
)  # fmt: skip


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
    name = _BARE_NAME.match(site)
    return Frame(name.group(1).split(".", 1)[0]) if name else None


def _in(frames: Iterable[Located], sections: set[int], source: str | None = None) -> list[Frame]:
    return [f.frame for f in frames if f.section in sections and (source is None or f.source == source)]


def _first_trace(body: Body, after_panic: bool) -> set[int]:
    """The first call trace with frames ("stack backtrace:" is often followed by "Call Trace:")."""
    with_frames = {located.section for located in body.frames if located.source == "trace"}
    for index, section in enumerate(body.sections):
        if section.kind == "trace" and section.after_panic == after_panic and index in with_frames:
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


def _first_frames(body: Body) -> list[Frame]:
    """The first stack before the panic, wherever it is printed (KMSAN and KFENCE print it under the
    first line, KASAN after "Call Trace:")."""
    for index, section in enumerate(body.sections):
        if section.kind != "aux" and not section.after_panic:
            frames = _in(body.frames, {index}, "trace")
            if frames:
                return frames
    return []


def _interrupted(body: Body) -> list[Frame]:
    """The first kernel register site (the interrupted context) and the stack under it; else the frames
    below the interrupt's entry (apic_timer_interrupt, </IRQ>, arm's exception stack)."""
    for position, located in enumerate(body.frames):
        if located.source == "site":
            following = body.frames[position + 1 :]
            below = [f.frame for f in following if f.section == located.section and f.source == "trace"]
            return [located.frame, *below]
    return [f.frame for f in body.frames if f.after_interrupt and f.source == "trace"]


def _lock_sites(body: Body) -> list[Frame]:
    return [f.frame for f in body.frames if f.source == "lock"] + _stack(body, after_panic=False)


# Where each strategy reads its frames, in the order it reads them (after the first line's own site).
_READERS: dict[Strategy, Callable[[Body], list[Frame]]] = {
    Strategy.FAULT: lambda body: _fault(body, after_panic=False) or _fault(body, after_panic=True),
    Strategy.WARNING: lambda body: _fault(body, after_panic=False) or _fault(body, after_panic=True),
    Strategy.HEADER: _first_frames,
    Strategy.INTERRUPTED: lambda body: _interrupted(body) + _stack(body, after_panic=False),
    Strategy.LOCKDEP: _lock_sites,
    Strategy.PANIC: lambda body: _fault(body, after_panic=True),
    Strategy.NONE: lambda _body: [],
}


def _candidates(strategy: Strategy, body: Body, header: Frame | None) -> list[Frame]:
    """The frames the strategy reads, in the order it reads them."""
    reader = _READERS.get(strategy)
    frames = reader(body) if reader else _stack(body, after_panic=False) or _stack(body, after_panic=True)
    return ([header] if header else []) + frames


def _hang_pick(frames: list[Frame], skip: SkipList) -> Frame | None:
    """A module's own frame, else the wait many hangs share (rtnl_lock, synchronize_rcu), else the first."""
    for frame in frames:
        if frame.module is not None and not skip.skips(frame):
            return frame
        if frame.module is None:
            bucket = next((name for needle, name in HANG_BUCKETS if needle in frame.function), None)
            if bucket:
                return Frame(bucket)
    return next((frame for frame in frames if not skip.skips(frame)), None)


def _stall_pick(frames: list[Frame], skip: SkipList) -> Frame | None:
    """A stalled CPU loops over several functions: name the one its loop was dispatched to.

    That is the frame above the first dispatcher (syscall entry, workqueue, kthread, ...), or a module's
    own frame met before it: a third-party module spinning is the news.
    """
    kept = [frame for frame in frames if not skip.skips(frame)]
    for index, frame in enumerate(kept):
        if frame.module is not None:
            return frame
        if STALL_ANCHORS.search(frame.function):
            if "smp_call_function" in frame.function:
                return Frame("smp_call_function")
            return kept[index - 1] if index else frame
    return kept[0] if kept else None


def guilty_frame(rule: StartRule, body: Body, header: Frame | None, skip: SkipList) -> Frame | None:
    frames = _candidates(rule.strategy, body, header)
    if rule.strategy is Strategy.HANG:
        return _hang_pick(frames, skip)
    if rule.strategy in (Strategy.INTERRUPTED, Strategy.STALL):
        return _stall_pick(frames, skip)
    return next((frame for frame in frames if not skip.skips(frame)), None)


def _warning_source(start: Start) -> tuple[str, SkipList]:
    """The title words and skip list of a WARNING, after the kernel check that printed it (if any)."""
    source = start.group("src") or ""
    for path, words, skip in _WARNING_SOURCES:
        if source.startswith(path) or f"/{path}" in source:
            return words, SkipList(start.rule.skip.anchored, substrings(*skip))
    return start.rule.words(start.match), start.rule.skip


def _refined(start: Start, body: Body) -> tuple[CrashKind, str, SkipList]:
    """A WARNING or BUG that is really a list or refcount_t check says so in its kind and title."""
    kind, words, skip = start.kind, start.rule.words(start.match), start.rule.skip
    source = start.group("src") or ""
    if kind in (CrashKind.WARNING, CrashKind.KERNEL_BUG):
        if body.list_op or source.startswith("lib/list_debug.c"):
            return CrashKind.LIST_CORRUPTION, f"{body.list_op or 'list'} corruption", skip
        if body.refcount_problem or source.startswith("lib/refcount.c"):
            refcount_skip = SkipList(skip.anchored, substrings("refcount", "kobject_"))
            return CrashKind.REFCOUNT, "refcount_t: " + tidy(body.refcount_problem or "bug"), refcount_skip
        if kind is CrashKind.WARNING:
            words, skip = _warning_source(start)
        elif source.startswith("mm/usercopy.c"):
            words, skip = "BUG: bad usercopy", SkipList(skip.anchored, substrings("usercopy", "__check"))
    if kind is CrashKind.KASAN and body.access and "invalid-free" not in words:
        words = f"{words} {body.access}"
    return kind, words, skip


def _site_from_lines(report: "ReportLines") -> Frame | None:
    pattern = report.start.rule.site_line
    if pattern is None:
        return None
    found = next((m for line in report.lines if (m := pattern.search(line.text))), None)
    return _bare_name(found.group("site")) if found else None


def _corruption(report: ReportLines, body: Body, guilty: Frame | None) -> str | None:
    """Why the report cannot be trusted to name its bug, in the order a person would look; None if it can."""
    rule, first = report.start.rule, report.lines[0]
    what = report.start.group("what")
    unnamed = rule.needs_site and rule.strategy is not Strategy.NONE and guilty is None
    checks = (
        (rule.corrupted is not None, rule.corrupted),
        (any(line.lost_before for line in report.lines[1:]), _DROPPED),
        # Without printk caller ids the lines of two tasks cannot be told apart.
        (len(body.pids) > 1 and first.context is None, _INTERLEAVED),
        (rule.free_text and (first.cut or (what is not None and not what.strip())), "its first line is cut"),
        (unnamed and not body.has_stack(), "the report ends before its stack trace"),
        (unnamed, "no frame of the report names a culprit"),
    )
    return next((reason for failed, reason in checks if failed), None)


def build_report(report: ReportLines) -> CrashReport:
    """The CrashReport for what the scanner gathered."""
    start = report.start
    body = read_body(report.lines, report.panic_lines)
    kind, words, skip = _refined(start, body)
    header = _header_site(start) or _site_from_lines(report)
    guilty = guilty_frame(start.rule, body, header, skip)
    reason = _corruption(report, body, guilty)
    if reason is None and guilty is not None:
        title = f"{words} in {guilty.function}" + (f" [{guilty.module}]" if guilty.module else "")
    elif reason is not None and start.rule.free_text and report.lines[0].cut:
        title = words.split(":", 1)[0]  # "BUG: unable to handle ker" was cut: only "BUG" is certain
    else:
        title = words  # a damaged report's title says only what is certain; function is a best guess
    if reason in _LINES_UNRELIABLE:
        guilty = None
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
