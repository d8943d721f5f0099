"""How a kernel report starts: one table of first lines, each with its kind, title words and strategy.

Read top to bottom; the first rule whose keyword is in the line and whose pattern matches names the
report. Patterns are searched anywhere in the line (a kernel line can follow a login prompt or a
user-space line cut short) except the generic ``BUG: ...``, which must start the line so that a
driver's own chatter ("testbed_sensor: BUG: count 0") is no report. No pattern nests unbounded
repeats, and every keyword is one of ``FINDER_KEYWORDS``, which the scanner uses to skip noise.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.normalize import description, tidy

FINDER_KEYWORDS = (
    "BUG", "WARNING", "INFO:", "panic", "Oops", "fault", "handle kernel", "error:", "opcode", "SAN:",
    "corruption", "refcount_t", "kmemleak", "NMI", "LOCKUP",
)  # fmt: skip


class Strategy(StrEnum):
    """Where a kind of report names its guilty function."""

    FAULT = "fault"  # the faulting site (RIP:, IP:, pc :) first, then the call trace
    WARNING = "warning"  # the function on the WARNING line, then as FAULT
    HEADER = "header"  # the function on the first line (KASAN, KMSAN), then the first stack
    STACK = "stack"  # the first call trace
    HANG = "hang"  # the first call trace, past the functions tasks wait in
    INTERRUPTED = "interrupted"  # the kernel context a lockup, stall or NMI interrupted
    LOCKDEP = "lockdep"  # the lock sites ("at: f+0x..") then the stack
    LEAK = "leak"  # the allocation backtrace, past the allocators
    PANIC = "panic"  # the panic's own stack
    NONE = "none"  # the report names no function


Words = Callable[[re.Match[str]], str]


def _fixed(words: str) -> Words:
    return lambda _match: words


@dataclass(frozen=True)
class StartRule:
    """One way a report starts."""

    kind: CrashKind
    keyword: str  # cheap substring test before the pattern; one of FINDER_KEYWORDS
    pattern: re.Pattern[str]
    words: Words  # the title before " in <function>"
    strategy: Strategy
    companion: bool = False  # inside an open report it belongs to it (Oops: after BUG:, the panic line)
    panic: bool = False  # a "Kernel panic - not syncing" line
    needs_site: bool = True  # a title without a function means the report was damaged
    free_text: bool = False  # the words come from the line's own text: a cut line makes them unreliable
    anchored: bool = False  # the pattern must match at the start of the line
    corrupted: str | None = None  # the line itself shows the report is damaged


@dataclass(frozen=True)
class Start:
    """A line that starts (or continues) a report, and the rule it matched."""

    rule: StartRule
    match: re.Match[str]

    @property
    def kind(self) -> CrashKind:
        return self.rule.kind

    def group(self, name: str) -> str | None:
        return self.match.groupdict().get(name)


def _rule(
    kind: CrashKind,
    keyword: str,
    pattern: str,
    words: str | Words,
    strategy: Strategy,
    *,
    companion: bool = False,
    panic: bool = False,
    needs_site: bool = True,
    free_text: bool = False,
    anchored: bool = False,
    corrupted: str | None = None,
) -> StartRule:
    return StartRule(
        kind, keyword, re.compile(pattern), _fixed(words) if isinstance(words, str) else words, strategy,
        companion=companion, panic=panic, needs_site=needs_site, free_text=free_text, anchored=anchored,
        corrupted=corrupted,
    )  # fmt: skip


_PANIC = r"(?<!end )Kernel panic - not syncing: ?"
_LOCKDEP_DEADLOCK = (
    r"possible circular locking dependency|possible recursive locking|possible irq lock inversion dependency"
    r"|\S+-safe -> \S+-unsafe lock order"
)
_LOCKDEP_OTHER = (
    r"inconsistent lock state|suspicious RCU usage|bad unlock balance|held lock freed|Nested lock was not taken"
    r"|lock held when returning to user space|lock held at task exit time|[\w/ .:-]{0,80}?still has locks held"
)


def _lockdep_words(match: re.Match[str]) -> str:
    what = match.group("what")
    if match.group("deadlock"):
        return "possible deadlock"
    if what.startswith("inconsistent"):
        return "inconsistent lock state"
    return "WARNING: " + ("still has locks held" if what.endswith("still has locks held") else what)


def _kasan_words(match: re.Match[str]) -> str:
    kind = match.group("type")
    return "KASAN: invalid-free" if "free" in kind and "after" not in kind else f"KASAN: {kind}"


def _ubsan_words(match: re.Match[str]) -> str:
    kind = match.group("type")
    return "UBSAN: " + ("undefined-behaviour" if kind.startswith("Undefined") else tidy(kind))


RULES: tuple[StartRule, ...] = (
    # Panic lines: inside a report they only end it; alone they are the report (header lost or none).
    _rule(CrashKind.STACK_PROTECTOR, "panic", _PANIC + r"stack-protector: Kernel stack is corrupted in: ?(?P<site>.*)",
          "stack-protector: Kernel stack is corrupted", Strategy.PANIC, companion=True, panic=True),
    _rule(CrashKind.SOFT_LOCKUP, "panic", _PANIC + r"softlockup", "BUG: soft lockup", Strategy.INTERRUPTED,
          companion=True, panic=True),
    _rule(CrashKind.HUNG_TASK, "panic", _PANIC + r"hung_task", "INFO: task hung", Strategy.HANG,
          companion=True, panic=True),
    _rule(CrashKind.HARD_LOCKUP, "panic", _PANIC + r"(?:Hard LOCKUP|Watchdog detected hard LOCKUP)",
          "watchdog: hard LOCKUP", Strategy.INTERRUPTED, companion=True, panic=True),
    _rule(CrashKind.RCU_STALL, "panic", _PANIC + r"RCU Stall", "INFO: rcu detected stall", Strategy.INTERRUPTED,
          companion=True, panic=True),
    _rule(CrashKind.NMI, "panic", _PANIC + r"NMI", "NMI: hang", Strategy.INTERRUPTED, companion=True, panic=True),
    _rule(CrashKind.WARNING, "panic", _PANIC + r"(?:\w+: )?panic_on_warn set", "WARNING", Strategy.FAULT,
          companion=True, panic=True),
    _rule(CrashKind.PANIC, "panic", _PANIC + r"(?:Oops(?: - BUG)?: )?Fatal exception",
          "Kernel panic - not syncing: Fatal exception", Strategy.PANIC, companion=True, panic=True,
          corrupted="the report that led to this panic is missing from the console"),
    _rule(CrashKind.PANIC, "panic", _PANIC + r"(?P<reason>.*)",
          lambda m: "Kernel panic - not syncing: " + tidy(m.group("reason")), Strategy.PANIC,
          companion=True, panic=True, needs_site=False, free_text=True),
    # A silent guest the testbed poked with an NMI, and the watchdogs.
    _rule(CrashKind.NMI, "NMI", r"NMI received for unknown reason|NMI: (?:IOCK|PCI system) error",
          "NMI: hang", Strategy.INTERRUPTED),
    _rule(CrashKind.HARD_LOCKUP, "LOCKUP", r"[Ww]atchdog detected hard LOCKUP", "watchdog: hard LOCKUP",
          Strategy.INTERRUPTED),
    _rule(CrashKind.SOFT_LOCKUP, "BUG", r"BUG: soft lockup", "BUG: soft lockup", Strategy.INTERRUPTED),
    # Sanitizers.
    _rule(CrashKind.KASAN, "SAN:", r"BUG: KASAN: (?P<type>double-free or invalid-free|[\w-]+)(?: in (?P<site>.*))?",
          _kasan_words, Strategy.HEADER),
    _rule(CrashKind.KMSAN, "SAN:", r"BUG: KMSAN: (?P<type>[\w-]+)(?: in (?P<site>.*))?",
          lambda m: f"KMSAN: {m.group('type')}", Strategy.HEADER),
    _rule(CrashKind.UBSAN, "SAN:", r"UBSAN: (?P<type>Undefined behaviour|[\w -]{1,60}?) in ", _ubsan_words,
          Strategy.STACK),
    _rule(CrashKind.KERNEL_BUG, "BUG", r"BUG: (?P<tool>KFENCE|KCSAN): (?P<type>[\w -]{1,60}?) in (?P<site>.*)",
          lambda m: f"{m.group('tool')}: {tidy(m.group('type'))}", Strategy.HEADER),
    # Memory access faults.
    _rule(CrashKind.NULL_DEREF, "BUG", r"BUG: (?:unable to handle )?kernel NULL pointer dereference",
          "BUG: kernel NULL pointer dereference", Strategy.FAULT),
    _rule(CrashKind.NULL_DEREF, "handle kernel", r"Unable to handle kernel NULL pointer dereference",
          "BUG: kernel NULL pointer dereference", Strategy.FAULT),
    _rule(CrashKind.PAGE_FAULT, "handle kernel",
          r"[Uu]nable to handle (?:kernel (?:paging request|execute from non-executable memory|access to user memory"
          r"|write to read-only memory|data access|instruction fetch))",
          "BUG: unable to handle page fault", Strategy.FAULT),
    _rule(CrashKind.PAGE_FAULT, "BUG", r"BUG: unable to handle page fault", "BUG: unable to handle page fault",
          Strategy.FAULT),
    _rule(CrashKind.PAGE_FAULT, "handle kernel", r"[Uu]nable to handle kernel", "BUG: unable to handle page fault",
          Strategy.FAULT, corrupted="the first line of the report is cut: the kind of fault is missing"),
    _rule(CrashKind.GENERAL_PROTECTION, "fault", r"general protection fault(?!.* ip:)", "general protection fault",
          Strategy.FAULT),
    _rule(CrashKind.DOUBLE_FAULT, "fault", r"PANIC: double fault", "PANIC: double fault", Strategy.FAULT,
          companion=True),
    _rule(CrashKind.DIVIDE_ERROR, "error:", r"divide[ _]error: \d", "divide error", Strategy.FAULT),
    _rule(CrashKind.INTERNAL_ERROR, "error:", r"Internal error: (?P<what>[^:\[]{1,80})",
          lambda m: "Internal error: " + tidy(m.group("what")), Strategy.FAULT, companion=True),
    _rule(CrashKind.INVALID_OPCODE, "opcode", r"invalid opcode: \d", "invalid opcode", Strategy.FAULT,
          companion=True),
    _rule(CrashKind.OOPS, "Oops", r"Oops(?::[^\[]{0,80})?\[#\d+\]", "Oops", Strategy.FAULT, companion=True),
    # Locking: lockdep's reports, before the generic BUG that some of them start with.
    _rule(CrashKind.LOCKDEP, "WARNING", rf"WARNING: (?P<what>(?P<deadlock>{_LOCKDEP_DEADLOCK})|{_LOCKDEP_OTHER})",
          _lockdep_words, Strategy.LOCKDEP),
    _rule(CrashKind.LOCKDEP, "INFO:", rf"INFO: (?P<what>(?P<deadlock>{_LOCKDEP_DEADLOCK})|{_LOCKDEP_OTHER})",
          _lockdep_words, Strategy.LOCKDEP),
    _rule(CrashKind.LOCKDEP, "BUG", rf"BUG: (?P<what>(?P<deadlock>{_LOCKDEP_DEADLOCK})|{_LOCKDEP_OTHER})",
          _lockdep_words, Strategy.LOCKDEP),
    _rule(CrashKind.HUNG_TASK, "INFO:", r"INFO: task .{1,80}? blocked (?:in I/O wait )?for more than \d+ seconds",
          "INFO: task hung", Strategy.HANG),
    _rule(CrashKind.HUNG_TASK, "INFO:", r"INFO: task .{1,80}? can't die for more than",
          "INFO: task can't die", Strategy.HANG),
    _rule(CrashKind.RCU_STALL, "INFO:", r"INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stall",
          "INFO: rcu detected stall", Strategy.INTERRUPTED),
    # Data corruption the kernel checks for; their message line comes before or after a WARNING/BUG.
    _rule(CrashKind.LIST_CORRUPTION, "corruption", r"(?P<op>h?list_\w+) corruption",
          lambda m: f"{m.group('op')} corruption", Strategy.FAULT),
    _rule(CrashKind.REFCOUNT, "refcount_t", r"refcount_t:? (?P<what>[^.,]{1,80}?)(?:\.|,| at |$)",
          lambda m: "refcount_t: " + tidy(m.group("what")), Strategy.FAULT),
    _rule(CrashKind.MEMORY_LEAK, "kmemleak", r"kmemleak: unreferenced object", "memory leak", Strategy.LEAK),
    _rule(CrashKind.MEMORY_LEAK, "kmemleak", r"kmemleak: \d+ new suspected memory leaks", "memory leak",
          Strategy.NONE, companion=True, needs_site=False),
    _rule(CrashKind.MEMORY_LEAK, "BUG", r"BUG: memory leak", "memory leak", Strategy.LEAK),
    # BUG() and WARN().
    _rule(CrashKind.SCHEDULING_WHILE_ATOMIC, "BUG", r"BUG: scheduling while atomic",
          "BUG: scheduling while atomic", Strategy.STACK),
    _rule(CrashKind.KERNEL_BUG, "BUG", r"kernel BUG at (?P<src>[^\s:!]+)", "kernel BUG", Strategy.FAULT),
    _rule(CrashKind.WARNING, "WARNING", r"WARNING: CPU: \d+ PID: \d+ at (?P<src>\S+)\s+(?P<site>.*)", "WARNING",
          Strategy.WARNING),
    _rule(CrashKind.WARNING, "WARNING", r"WARNING: (?P<src>[\w/.+-]+:\d+) at (?P<site>[^,]*), CPU#\d+", "WARNING",
          Strategy.WARNING),
    _rule(CrashKind.WARNING, "WARNING", r"WARNING: at (?P<src>\S+)\s+(?P<site>.*)", "WARNING", Strategy.WARNING),
    _rule(CrashKind.WARNING, "WARNING", r"WARNING: CPU: \d+ PID: \d+", "WARNING", Strategy.WARNING),
    # Any other BUG the kernel names: SLUB's "BUG kmalloc-64 (...): ...", then "BUG: ..." at the line start.
    _rule(CrashKind.KERNEL_BUG, "BUG", r"BUG [\w-]+ \([^)]{0,80}\): (?P<what>.+)",
          lambda m: "BUG: " + description(m.group("what")), Strategy.STACK, anchored=True, free_text=True),
    _rule(CrashKind.KERNEL_BUG, "BUG", r"BUG:\s*(?P<what>.*)",
          lambda m: ("BUG: " + description(m.group("what"))).rstrip(": "), Strategy.FAULT, anchored=True,
          free_text=True),
)  # fmt: skip


def match_start(text: str) -> Start | None:
    """The rule a console line starts a report with; None for every other line."""
    for rule in RULES:
        if rule.keyword not in text:
            continue
        found = rule.pattern.match(text) if rule.anchored else rule.pattern.search(text)
        if found:
            return Start(rule, found)
    return None
