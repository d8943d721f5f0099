"""Linux kernel crash reports read from a serial console log, in the manner of syzkaller.

A report starts at a recognizable first line (``BUG:``, ``general protection fault``, ``Oops``,
``WARNING:``, hung task, RCU stall, soft lockup, ``Kernel panic - not syncing``). Its title is
that line followed by the faulting function and module, read from the kernel-mode ``RIP:`` line
or, failing that, from the first call-trace frame that is not crash machinery. The report that
matters is the last one before the last panic line of the last boot in the log.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# A console line may carry other output before the kernel's timestamp (a login prompt, a
# userspace line cut short by the oops), so the timestamp is looked for anywhere in the line.
_TIMESTAMP = re.compile(r"(?:<\d+>)?\[\s*(?P<seconds>\d+\.\d+)\]\s?")
_SAME_REPORT_SECONDS = 5.0  # an oops and the panic it causes are printed within this much time
_BOOT_BANNER = re.compile(r"Linux version \d+\.\d+")
_PANIC = re.compile(r"^Kernel panic - not syncing: (?P<why>.*)")  # not the "---[ end Kernel panic" marker
_END_MARKER = re.compile(r"---\[ end (?:Kernel panic|trace)")
_KERNEL_RIP = re.compile(r"RIP: 0010:(?P<frame>\S+)(?:\s+\[(?P<module>[\w-]+)\])?")
_FRAME = re.compile(
    r"^\s*(?P<function>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[(?P<module>[\w-]+)\])?\s*$"
)
_MODULES_LINKED = re.compile(r"Modules linked in:(?P<modules>.*)")
_TAINTED = re.compile(r"Tainted: (?P<flags>[A-Z ]+?)\s+\d")


class CrashKind(StrEnum):
    """What kind of kernel failure a report describes."""

    NULL_DEREF = "null_pointer_dereference"  # BUG: kernel NULL pointer dereference
    PAGE_FAULT = "page_fault"  # BUG: unable to handle page fault
    GENERAL_PROTECTION = "general_protection_fault"  # general protection fault
    KERNEL_BUG = "kernel_bug"  # kernel BUG at file:line / other BUG:
    SOFT_LOCKUP = "soft_lockup"  # watchdog: BUG: soft lockup
    HUNG_TASK = "hung_task"  # INFO: task ... blocked for more than
    RCU_STALL = "rcu_stall"  # rcu: INFO: ... detected stalls
    WARNING = "warning"  # WARNING: CPU: ... at file:line
    OOPS = "oops"  # Oops: without a more specific first line
    PANIC = "panic"  # only a Kernel panic line


# Order matters: the first pattern matching a line names its kind.
_REPORT_STARTS: tuple[tuple[CrashKind, re.Pattern[str]], ...] = (
    (CrashKind.NULL_DEREF, re.compile(r"BUG: kernel NULL pointer dereference.*")),
    (CrashKind.PAGE_FAULT, re.compile(r"BUG: unable to handle (?:page fault|kernel paging request).*")),
    (CrashKind.SOFT_LOCKUP, re.compile(r"(?:watchdog: )?BUG: soft lockup.*")),
    (CrashKind.KERNEL_BUG, re.compile(r"kernel BUG at .*|BUG: .*")),
    (CrashKind.GENERAL_PROTECTION, re.compile(r"general protection fault.*")),
    (CrashKind.HUNG_TASK, re.compile(r"INFO: task .* blocked for more than \d+ seconds\.")),
    (CrashKind.RCU_STALL, re.compile(r"(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:cpu )?stalls?.*")),
    (CrashKind.WARNING, re.compile(r"WARNING: CPU: \d+ PID: \d+ at .*")),
    (CrashKind.OOPS, re.compile(r"Oops: .*")),
)

# Crash machinery that appears on top of every trace and names nobody's bug.
_MACHINERY = re.compile(
    r"^(?:dump_stack\w*|show_stack|panic|vpanic|__warn\w*|warn_slowpath\w*|report_bug|handle_bug|"
    r"die\w*|__die\w*|oops_\w+|exc_\w+|asm_exc_\w+|asm_sysvec_\w+|page_fault_oops|do_user_addr_fault|"
    r"kernelmode_fixup_or_oops|__bad_area\w*|bad_area\w*|no_context|do_trap|do_error_trap|"
    r"_printk|printk\w*|watchdog_timer_fn|__hrtimer_run_queues|hrtimer_interrupt|"
    r"__sysvec_\w+|sysvec_\w+|rcu_\w+|check_panic_on_warn|nmi_\w+|__nmi_\w+|"
    r"__x64_sys_\w+|do_syscall_64|entry_SYSCALL_\w+|"
    # where a blocked task sleeps: the function that waited is further down
    r"__schedule|schedule\w*|io_schedule\w*|__mutex_lock\w*|mutex_lock\w*|wait_for_completion\w*|"
    r"rwsem_down_\w+|__down\w*|down_read\w*|down_write\w*|msleep\w*|usleep_range\w*)$"
)


@dataclass(frozen=True)
class CrashReport:
    """A kernel crash as read from the console."""

    kind: CrashKind
    title: str  # first line, then "in <function> [<module>]" when known
    first_line: str  # the report's first line, timestamp removed
    function: str | None  # the faulting function
    module: str | None  # the faulting module; None when the fault is in the core kernel
    panic_reason: str | None  # what followed "Kernel panic - not syncing:"
    tainted: str | None  # the taint flags printed with the report
    modules_linked: tuple[str, ...] = ()
    excerpt: tuple[str, ...] = field(default=(), repr=False)  # the report's lines, timestamps kept

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "title": self.title,
            "first_line": self.first_line,
            "function": self.function,
            "module": self.module,
            "panic_reason": self.panic_reason,
            "tainted": self.tainted,
            "modules_linked": list(self.modules_linked),
            "excerpt": "\n".join(self.excerpt),
        }


def _strip(line: str) -> str:
    stamp = _TIMESTAMP.search(line)
    return (line[stamp.end() :] if stamp else line).rstrip()


def _seconds(line: str) -> float | None:
    stamp = _TIMESTAMP.search(line)
    return float(stamp.group("seconds")) if stamp else None


def _within(seconds: float | None, panic_seconds: float) -> bool:
    return seconds is not None and panic_seconds - seconds <= _SAME_REPORT_SECONDS


def _report_start(lines: Sequence[str], stripped: Sequence[str], panic_at: int | None) -> int | None:
    """The first line of the report that led to the panic (or of the last report, without one).

    The first start line printed shortly before the panic wins: an oops prints "BUG: ..." then
    "Oops: ...", and the first names the fault. Without timestamps, the last start line wins.
    """
    end = panic_at if panic_at is not None else len(stripped)
    starts = [index for index in range(end) if _kind_of(stripped[index])]
    if not starts:
        return None
    panic_seconds = _seconds(lines[panic_at]) if panic_at is not None else None
    if panic_seconds is not None:
        near = [index for index in starts if _within(_seconds(lines[index]), panic_seconds)]
        if near:
            return near[0]
    return starts[-1]


def _kind_of(text: str) -> CrashKind | None:
    for kind, pattern in _REPORT_STARTS:
        if pattern.match(text):
            return kind
    return None


def _last_boot(lines: Sequence[str]) -> Sequence[str]:
    starts = [index for index, line in enumerate(lines) if _BOOT_BANNER.search(line)]
    return lines[starts[-1] :] if starts else lines


def _fault_site(report: Sequence[str]) -> tuple[str | None, str | None]:
    for line in report:
        rip = _KERNEL_RIP.search(line)
        if rip:
            return rip.group("frame").split("+", 1)[0], rip.group("module")
    for line in report:
        frame = _FRAME.match(line)
        if frame and not _MACHINERY.match(frame.group("function")):
            return frame.group("function"), frame.group("module")
    return None, None


def _first_match(report: Sequence[str], pattern: re.Pattern[str]) -> re.Match[str] | None:
    for line in report:
        found = pattern.search(line)
        if found:
            return found
    return None


def parse_console(text: str, max_excerpt_lines: int = 120) -> CrashReport | None:
    """Find the crash report that brought the last boot down; None when the log shows none."""
    lines = _last_boot(text.replace("\r", "").split("\n"))
    stripped = [_strip(line) for line in lines]
    panic_at = next((i for i in range(len(stripped) - 1, -1, -1) if _PANIC.search(stripped[i])), None)
    start = _report_start(lines, stripped, panic_at)
    if start is None and panic_at is None:
        return None
    first = start if start is not None else panic_at
    assert first is not None
    end = next(
        (
            i + 1
            for i in range(max(first, panic_at or first), len(stripped))
            if _END_MARKER.search(stripped[i])
        ),
        len(stripped),
    )
    report = stripped[first:end]
    first_line = stripped[first]
    kind = _kind_of(first_line) or CrashKind.PANIC
    if kind is CrashKind.PANIC:
        first_line = _PANIC.search(first_line).group(0)  # type: ignore[union-attr]
    function, module = _fault_site(report)
    panic = _PANIC.search(stripped[panic_at]) if panic_at is not None else None
    tainted = _first_match(report, _TAINTED)
    linked = _first_match(report, _MODULES_LINKED)
    location = f" in {function}" if function else ""
    location += f" [{module}]" if module else ""
    return CrashReport(
        kind=kind,
        title=f"{first_line}{location}",
        first_line=first_line,
        function=function,
        module=module,
        panic_reason=panic.group("why").strip() if panic else None,
        tainted=tainted.group("flags").strip() if tainted else None,
        modules_linked=tuple(linked.group("modules").split()) if linked else (),
        excerpt=tuple(lines[first : min(end, first + max_excerpt_lines)]),
    )
