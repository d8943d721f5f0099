"""How a kernel report starts: one table of first lines, each with its kind, title words and strategy.

Read top to bottom; the first rule whose keyword is in the line and whose pattern matches names the
report. Patterns are searched anywhere in the line (a kernel line can follow a login prompt or a
user-space line cut short) except the generic ``BUG: ...``, which must start the line so that a
driver's own chatter ("testbed_sensor: BUG: count 0") is no report. No pattern nests unbounded
repeats, and every line a rule matches holds one of ``FINDER_KEYWORDS``, which the scanner uses to
skip the noise between reports.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.core.crash.frames import HANG_SKIP, HANG_SUBSTRINGS, LEAK_SKIP, STALL_SKIP, SkipList, substrings
from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.normalize import description, tidy

FINDER_KEYWORDS = (
    "BUG:", "kernel BUG", "(Not tainted):", "(Tainted:", "WARNING:", "INFO:", "not syncing", "[#",
    "protection fault", "double fault", "Unhandled fault", "handle kernel", "UBSAN:", "corruption",
    "refcount_t", "kmemleak", "NMI", "hard LOCKUP",
)  # fmt: skip
"""Every line a rule matches holds one of these (``[#`` is the oops counter of Oops:, invalid opcode:,
divide error:, Internal error: ...; the tainted notes are SLUB's "BUG kmalloc-64 (Not tainted): ...").
Each costs one pass over the console at C speed, so the list stays short and specific: "BUG" alone
would stop the scanner at every "BUG count 0" a sensor prints."""


class Strategy(StrEnum):
    """Where a kind of report names its guilty function."""

    FAULT = "fault"  # the faulting site (RIP:, IP:, pc :) first, then the call trace
    WARNING = "warning"  # the function on the WARNING line, then as FAULT
    HEADER = "header"  # the function on the first line (KASAN, KMSAN), then the first stack
    STACK = "stack"  # the first call trace
    HANG = "hang"  # the first call trace, past the functions tasks wait in
    INTERRUPTED = "interrupted"  # the kernel context a lockup, stall or NMI interrupted, past its loop
    STALL = "stall"  # the first call trace, past the loop (corrupted stack end)
    LOCKDEP = "lockdep"  # the lock sites ("at: f+0x..") then the stack
    LEAK = "leak"  # the allocation backtrace, past the allocators
    PANIC = "panic"  # the panic's own stack
    NONE = "none"  # the report names no function


_STRATEGY_SKIPS: dict[Strategy, tuple[re.Pattern[str] | None, tuple[str, ...]]] = {
    Strategy.HANG: (HANG_SKIP, HANG_SUBSTRINGS),
    Strategy.INTERRUPTED: (STALL_SKIP, ("apic_timer_interrupt", "rcu")),
    Strategy.STALL: (STALL_SKIP, ()),
    Strategy.LEAK: (
        LEAK_SKIP,
        ("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get", "list_lru_init", "kasprintf",
         "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"),
    ),
}  # fmt: skip

Words = Callable[[re.Match[str]], str]


def _fixed(words: str) -> Words:
    return lambda _match: words


@dataclass(frozen=True)
class StartRule:
    """One way a report starts."""

    kind: CrashKind
    keywords: tuple[str, ...]  # substrings every line it matches holds: cheap tests before the pattern
    pattern: re.Pattern[str]
    words: Words  # the title before " in <function>"
    strategy: Strategy
    skip: SkipList  # the frames this kind of report looks past
    companion: bool = False  # inside an open report it belongs to it (Oops: after BUG:, the panic line)
    panic: bool = False  # a "Kernel panic - not syncing" line
    needs_site: bool = True  # a title without a function means the report was damaged
    free_text: bool = False  # the words come from the line's own text: a cut line makes them unreliable
    anchored: bool = False  # the pattern must match at the start of the line
    corrupted: str | None = None  # the line itself shows the report is damaged
    site_line: re.Pattern[str] | None = None  # a later line that names the function (group "site")


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
    keyword: str | tuple[str, ...],
    pattern: str,
    words: str | Words,
    strategy: Strategy,
    *,
    skip: tuple[str, ...] = (),
    companion: bool = False,
    panic: bool = False,
    needs_site: bool = True,
    free_text: bool = False,
    anchored: bool = False,
    corrupted: str | None = None,
    site_line: str | None = None,
) -> StartRule:
    anchored_skip, core_skip = _STRATEGY_SKIPS.get(strategy, (None, ()))
    return StartRule(
        kind=kind,
        keywords=(keyword,) if isinstance(keyword, str) else keyword,
        pattern=re.compile(pattern),
        words=_fixed(words) if isinstance(words, str) else words,
        strategy=strategy,
        skip=SkipList(anchored_skip, substrings(*skip, *core_skip)),
        companion=companion,
        panic=panic,
        needs_site=needs_site,
        free_text=free_text,
        anchored=anchored,
        corrupted=corrupted,
        site_line=re.compile(site_line) if site_line else None,
    )


_PANIC = r"(?<!end )Kernel panic - not syncing: ?"
_DEADLOCK = (
    r"possible circular locking dependency|possible recursive locking|possible irq lock inversion dependency"
    r"|\S+-safe -> \S+-unsafe lock order"
)
_LOCKDEP_OTHER = (
    r"bad unlock balance|held lock freed|lock held when returning to user space"
    r"|lock held at task exit time|[\w/ .:-]{0,80}?still has locks held"
)
_LOCKDEP_SKIP = ("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue")


def _lockdep_words(match: re.Match[str]) -> str:
    what = match.group("what")
    if what.endswith("still has locks held"):
        return "WARNING: still has locks held"
    return "WARNING: " + what


def _kasan_words(match: re.Match[str]) -> str:
    kind = match.group("type")
    return "KASAN: invalid-free" if "free" in kind and "after" not in kind else f"KASAN: {kind}"


def _ubsan_words(match: re.Match[str]) -> str:
    kind = match.group("type")
    return "UBSAN: " + ("undefined-behaviour" if kind.startswith("Undefined") else tidy(kind))


def _lockdep_rules(prefix: str) -> tuple[StartRule, ...]:
    """Lockdep's reports: "WARNING: ..." today, "INFO: ..." and "BUG: ..." (bracketed) in older kernels."""
    return (
        _rule(CrashKind.LOCKDEP, (f"{prefix}: ", "-unsafe lock order"), rf"{prefix}: \S+-safe -> \S+-unsafe lock order", "possible deadlock",
              Strategy.STACK),  # the stack where the lock "became irq-safe at:"
        _rule(CrashKind.LOCKDEP, f"{prefix}: possible", rf"{prefix}: (?:{_DEADLOCK})", "possible deadlock", Strategy.LOCKDEP,
              skip=_LOCKDEP_SKIP),
        _rule(CrashKind.LOCKDEP, f"{prefix}: inconsistent", rf"{prefix}: inconsistent lock state", "inconsistent lock state",
              Strategy.STACK),
        _rule(CrashKind.LOCKDEP, f"{prefix}: Invalid", rf"{prefix}: Invalid wait context", "WARNING: locking bug", Strategy.STACK,
              skip=("lock_sock", "release_sock")),
        _rule(CrashKind.LOCKDEP, f"{prefix}: Nested", rf"{prefix}: Nested lock was not taken", "WARNING: nested lock was not taken",
              Strategy.FAULT),
        _rule(CrashKind.LOCKDEP, f"{prefix}: suspicious", rf"{prefix}: suspicious RCU usage", "WARNING: suspicious RCU usage",
              Strategy.STACK, skip=("rcu", "kmem", "slab")),
        _rule(CrashKind.LOCKDEP, (f"{prefix}: ", "lock"), rf"{prefix}: (?P<what>{_LOCKDEP_OTHER})", _lockdep_words,
              Strategy.LOCKDEP, skip=("lock_sock", "release_sock")),
    )  # fmt: skip


RULES: tuple[StartRule, ...] = (
    # Panic lines: inside a report they only end it; alone they are the report (header lost or none).
    _rule(CrashKind.STACK_PROTECTOR, "not syncing", _PANIC + r"stack-protector: Kernel stack is corrupted in: ?(?P<site>.*)",
          "stack-protector: Kernel stack is corrupted", Strategy.PANIC, companion=True, panic=True,
          skip=("stack_chk",)),
    _rule(CrashKind.SOFT_LOCKUP, "not syncing", _PANIC + r"softlockup", "BUG: soft lockup", Strategy.INTERRUPTED,
          companion=True, panic=True),
    _rule(CrashKind.HUNG_TASK, "not syncing", _PANIC + r"hung_task", "INFO: task hung", Strategy.HANG,
          companion=True, panic=True),
    _rule(CrashKind.HARD_LOCKUP, "not syncing", _PANIC + r"(?:Hard LOCKUP|Watchdog detected hard LOCKUP)",
          "watchdog: hard LOCKUP", Strategy.INTERRUPTED, companion=True, panic=True),
    _rule(CrashKind.RCU_STALL, "not syncing", _PANIC + r"RCU Stall", "INFO: rcu detected stall", Strategy.INTERRUPTED,
          companion=True, panic=True),
    _rule(CrashKind.NMI, "not syncing", _PANIC + r"NMI", "NMI: hang", Strategy.INTERRUPTED, companion=True, panic=True),
    _rule(CrashKind.WARNING, "not syncing", _PANIC + r"(?:\w+: )?panic_on_warn set", "WARNING", Strategy.FAULT,
          companion=True, panic=True),
    _rule(CrashKind.PANIC, "not syncing", _PANIC + r"(?:Oops(?: - BUG)?: )?Fatal exception",
          "Kernel panic - not syncing: Fatal exception", Strategy.PANIC, companion=True, panic=True,
          corrupted="the report that led to this panic is missing from the console"),
    _rule(CrashKind.PANIC, "not syncing", _PANIC + r"kernel stack overflow", "Kernel panic - not syncing: kernel stack overflow",
          Strategy.STALL, companion=True, panic=True, skip=("bad_stack",)),
    _rule(CrashKind.PANIC, "not syncing", _PANIC + r"corrupted stack end", "Kernel panic - not syncing: corrupted stack end",
          Strategy.STALL, companion=True, panic=True, skip=("schedule", "retint_kernel")),
    _rule(CrashKind.PANIC, "not syncing", _PANIC + r"(?P<reason>.*)",
          lambda m: "Kernel panic - not syncing: " + tidy(m.group("reason")), Strategy.PANIC,
          companion=True, panic=True, needs_site=False, free_text=True),
    # A silent guest the testbed poked with an NMI, and the watchdogs.
    _rule(CrashKind.NMI, "NMI", r"NMI received for unknown reason|NMI: (?:IOCK|PCI system) error",
          "NMI: hang", Strategy.INTERRUPTED),
    _rule(CrashKind.HARD_LOCKUP, "hard LOCKUP", r"[Ww]atchdog detected hard LOCKUP", "watchdog: hard LOCKUP",
          Strategy.INTERRUPTED),
    _rule(CrashKind.SOFT_LOCKUP, "BUG: soft lockup", r"BUG: soft lockup", "BUG: soft lockup", Strategy.INTERRUPTED),
    # Sanitizers.
    _rule(CrashKind.KASAN, "BUG: KASAN", r"BUG: KASAN: (?P<type>double-free or invalid-free|[\w-]+)(?: in (?P<site>.*))?",
          _kasan_words, Strategy.HEADER, skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_")),
    _rule(CrashKind.KMSAN, "BUG: KMSAN", r"BUG: KMSAN: (?P<type>[\w-]+)(?: in (?P<site>.*))?",
          lambda m: f"KMSAN: {m.group('type')}", Strategy.HEADER,
          skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$", "^(?:crypto|cipher|drbg|rng)_")),
    _rule(CrashKind.UBSAN, "UBSAN:", r"UBSAN: (?P<type>Undefined behaviour|[\w -]{1,60}?) in ", _ubsan_words,
          Strategy.STACK, skip=("ubsan", "overflow")),
    _rule(CrashKind.KERNEL_BUG, "BUG: K", r"BUG: (?P<tool>KFENCE|KCSAN): (?P<type>[\w :-]{1,60}?) in (?P<site>.*)",
          lambda m: f"{m.group('tool')}: {tidy(m.group('type'))}", Strategy.HEADER),
    # Memory access faults.
    _rule(CrashKind.NULL_DEREF, "BUG:", r"BUG: (?:unable to handle )?kernel NULL pointer dereference",
          "BUG: kernel NULL pointer dereference", Strategy.FAULT),
    _rule(CrashKind.NULL_DEREF, "handle kernel NULL", r"Unable to handle kernel NULL pointer dereference",
          "BUG: kernel NULL pointer dereference", Strategy.FAULT),
    _rule(CrashKind.PAGE_FAULT, "handle kernel",
          r"[Uu]nable to handle kernel (?:paging request|execute from non-executable memory|access to user memory"
          r"|write to read-only memory|data access|instruction fetch)",
          "BUG: unable to handle page fault", Strategy.FAULT),
    _rule(CrashKind.PAGE_FAULT, "BUG: unable", r"BUG: unable to handle page fault", "BUG: unable to handle page fault",
          Strategy.FAULT),
    _rule(CrashKind.PAGE_FAULT, "handle kernel", r"[Uu]nable to handle kernel", "BUG: unable to handle page fault",
          Strategy.FAULT, corrupted="the first line of the report is cut: the kind of fault is missing"),
    _rule(CrashKind.PAGE_FAULT, "Unhandled fault", r"Unhandled fault: ", "Unhandled fault", Strategy.FAULT),
    _rule(CrashKind.GENERAL_PROTECTION, "protection fault", r"general protection fault(?!.* ip:)", "general protection fault",
          Strategy.FAULT),
    _rule(CrashKind.GENERAL_PROTECTION, "[#", r"stack segment: \d+ \[#", "stack segment fault", Strategy.FAULT),
    _rule(CrashKind.DOUBLE_FAULT, "double fault", r"PANIC: double fault", "PANIC: double fault", Strategy.FAULT,
          companion=True),
    _rule(CrashKind.DIVIDE_ERROR, "[#", r"divide[ _]error: \d+ \[#", "divide error", Strategy.FAULT),
    _rule(CrashKind.INTERNAL_ERROR, "[#", r"Internal error: (?P<what>[^:\[]{1,80})",
          lambda m: "Internal error: " + tidy(m.group("what")), Strategy.FAULT, companion=True),
    _rule(CrashKind.INVALID_OPCODE, "[#", r"invalid opcode: \d+ \[#", "invalid opcode", Strategy.FAULT,
          companion=True),
    _rule(CrashKind.OOPS, "[#", r"Oops(?::[^\[]{0,80})?\[#\d+\]", "Oops", Strategy.FAULT, companion=True),
    # Locking: lockdep's reports, before the generic BUG that some of them start with.
    *_lockdep_rules("WARNING"),
    *_lockdep_rules("INFO"),
    *_lockdep_rules("BUG"),
    _rule(CrashKind.LOCKDEP, "INFO: trying", r"INFO: trying to register non-static key",
          "INFO: trying to register non-static key", Strategy.STACK, skip=("stack", "lock", "IRQ")),
    _rule(CrashKind.HUNG_TASK, "INFO: task", r"INFO: task .{1,80}? blocked (?:in I/O wait )?for more than \d+ seconds",
          "INFO: task hung", Strategy.HANG),
    _rule(CrashKind.HUNG_TASK, "INFO: task", r"INFO: task .{1,80}? can't die for more than", "INFO: task can't die",
          Strategy.STACK, skip=("schedule",)),
    _rule(CrashKind.RCU_STALL, "INFO: rcu_", r"INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stall",
          "INFO: rcu detected stall", Strategy.INTERRUPTED),
    # Data corruption the kernel checks for; their message line comes before or after a WARNING/BUG.
    _rule(CrashKind.LIST_CORRUPTION, "corruption", r"(?P<op>h?list_\w+) corruption",
          lambda m: f"{m.group('op')} corruption", Strategy.FAULT),
    _rule(CrashKind.REFCOUNT, "refcount_t", r"refcount_t:? (?P<what>[^.,]{1,80}?)(?:\.|,| at |$)",
          lambda m: "refcount_t: " + tidy(m.group("what")), Strategy.FAULT, skip=("refcount", "kobject_")),
    _rule(CrashKind.MEMORY_LEAK, "kmemleak: unreferenced", r"kmemleak: unreferenced object", "memory leak", Strategy.LEAK),
    _rule(CrashKind.MEMORY_LEAK, "kmemleak", r"kmemleak: \d+ new suspected memory leaks", "memory leak",
          Strategy.NONE, companion=True, needs_site=False),
    _rule(CrashKind.MEMORY_LEAK, "BUG: memory", r"BUG: memory leak", "memory leak", Strategy.LEAK),
    # BUG() and WARN(), and the BUGs the kernel names.
    _rule(CrashKind.SCHEDULING_WHILE_ATOMIC, "BUG: scheduling", r"BUG: scheduling while atomic",
          "BUG: scheduling while atomic", Strategy.STACK, skip=("schedule",)),
    _rule(CrashKind.KERNEL_BUG, "BUG:",
          r"BUG: (?P<lock>spinlock|rwlock) (?P<what>lockup suspected|already unlocked|recursion|cpu recursion"
          r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
          lambda m: f"BUG: {m.group('lock')} {m.group('what')}", Strategy.STACK, skip=("spin_", "_lock", "_unlock")),
    _rule(CrashKind.KERNEL_BUG, "BUG: using", r"BUG: using (?P<what>[\w]+)\(\) in preemptible",
          lambda m: f"BUG: using {m.group('what')}() in preemptible code", Strategy.STACK,
          skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu")),
    _rule(CrashKind.KERNEL_BUG, "BUG:", r"BUG: (?:TASK )?stack guard page was hit", "BUG: stack guard page was hit",
          Strategy.INTERRUPTED),
    _rule(CrashKind.KERNEL_BUG, "BUG: Dentry", r"BUG: Dentry .{0,200}? still in use", "BUG: Dentry still in use",
          Strategy.STACK, needs_site=False),
    _rule(CrashKind.KERNEL_BUG, "BUG:", r"BUG: (?P<what>Bad rss-counter state|non-zero nr_\w+ on freeing mm|workqueue lockup)",
          lambda m: f"BUG: {tidy(m.group('what'))}", Strategy.NONE, needs_site=False),
    _rule(CrashKind.KERNEL_BUG, "BUG: Bad page", r"BUG: Bad page (?P<what>state|cache)", lambda m: f"BUG: Bad page {m.group('what')}",
          Strategy.STACK, skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio", "truncate_inode_pages",
                                "page_frag_free", "alloc", "vmap", "page_owner", "bad_page")),
    _rule(CrashKind.KERNEL_BUG, "BUG: workqueue", r"BUG: workqueue leaked lock or atomic", "BUG: workqueue leaked lock or atomic",
          Strategy.NONE, site_line=r"last function: (?P<site>\w+)"),
    _rule(CrashKind.KERNEL_BUG, "kernel BUG", r"kernel BUG at (?P<src>[^\s:!]+)", "kernel BUG", Strategy.FAULT,
          skip=("^skb_",)),
    _rule(CrashKind.WARNING, "WARNING: CPU", r"WARNING: CPU: \d+ PID: \d+ at (?P<src>\S+)\s+(?P<site>.*)", "WARNING",
          Strategy.WARNING),
    _rule(CrashKind.WARNING, ("WARNING: ", ", CPU#"), r"WARNING: (?:\[.{0,200}?\] )?(?P<src>[\w/.+-]+:\d+) at (?P<site>[^,]*), CPU#",
          "WARNING", Strategy.WARNING),
    _rule(CrashKind.WARNING, "WARNING: at", r"WARNING: at (?P<src>\S+)\s+(?P<site>.*)", "WARNING", Strategy.WARNING),
    _rule(CrashKind.WARNING, "WARNING: CPU", r"WARNING: CPU: \d+ PID: \d+", "WARNING", Strategy.WARNING),
    _rule(CrashKind.WARNING, "WARNING: kernel stack", r"WARNING: kernel stack (?P<what>regs|frame pointer) .{0,120}has bad",
          "WARNING: kernel stack has bad value", Strategy.NONE, needs_site=False),
    # Any other BUG: SLUB's "BUG kmalloc-64 (...): ...", then "BUG: ..." at the start of the line.
    *(
        _rule(CrashKind.KERNEL_BUG, ("BUG ", taint), r"BUG [\w-]+ \([^)]{0,80}\): (?P<what>.+)",
              lambda m: "BUG: " + description(m.group("what")), Strategy.STACK, anchored=True, free_text=True)
        for taint in ("(Not tainted):", "(Tainted:")
    ),
    _rule(CrashKind.KERNEL_BUG, "BUG:", r"BUG:\s*(?P<what>.*)",
          lambda m: ("BUG: " + description(m.group("what"))).rstrip(": "), Strategy.FAULT, anchored=True,
          free_text=True),
)  # fmt: skip


def _finder_of(rule: StartRule) -> str:
    """The finder keyword every line this rule matches holds (the first one its keywords contain)."""
    return next(f for f in FINDER_KEYWORDS if any(f in keyword for keyword in rule.keywords))


# Rules grouped by finder keyword, each with its place in RULES: a line is tried only against the
# groups whose keyword it holds, in table order.
_GROUPS: tuple[tuple[str, tuple[tuple[int, StartRule], ...]], ...] = tuple(
    (finder, tuple((index, rule) for index, rule in enumerate(RULES) if _finder_of(rule) == finder))
    for finder in FINDER_KEYWORDS
)


def _holds(text: str, keywords: tuple[str, ...]) -> bool:
    for keyword in keywords:  # a plain loop: this runs for every line a rule group is tried on
        if keyword not in text:
            return False
    return True


# The most specific keyword of every rule (its last), in one regex: the scanner asks it of every line
# that holds a finder keyword, so that "harness: WARNING: step 3 took 120 ms" costs one C call.
_SPECIFIC = re.compile(
    "|".join(re.escape(k) for k in sorted({rule.keywords[-1] for rule in RULES}, key=len, reverse=True))
)


def may_start(text: str) -> bool:
    """Cheap test: could any rule match this text (or a kernel line inside it)? Never False when one does."""
    return _SPECIFIC.search(text) is not None


def match_start(text: str) -> Start | None:
    """The rule a console line starts a report with; None for every other line."""
    best: Start | None = None
    best_index = len(RULES)
    for finder, group in _GROUPS:
        if finder not in text:
            continue
        for index, rule in group:
            if index >= best_index:
                break
            if not _holds(text, rule.keywords):
                continue
            found = rule.pattern.match(text) if rule.anchored else rule.pattern.search(text)
            if found:
                best, best_index = Start(rule, found), index
                break
    return best
