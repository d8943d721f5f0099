"""How kernel reports start: one table of first lines, after syzkaller's pkg/report/linux.go.

Read top to bottom; the first rule whose keywords are in the line and whose pattern matches names the
report. Patterns are searched anywhere in the line (a kernel line can follow a login prompt or a
user-space line cut short) except the generic ``BUG: ...``, which must start the line so that a
driver's own chatter ("testbed_sensor: BUG: count 0") is no report. No pattern nests unbounded
repeats. The per-rule ``skip`` lists are syzkaller's, for core-kernel frames.
"""

import re

from orchestrator.core.crash.kinds import CrashKind
from orchestrator.core.crash.normalize import description, tidy
from orchestrator.core.crash.start_rule import StartRule, Strategy, rule

_PANIC = r"(?<!end )Kernel panic - not syncing: ?"
_DEADLOCK = (
    r"possible circular locking dependency|possible recursive locking|possible irq lock inversion dependency"
)
_LOCKDEP_OTHER = (
    r"bad unlock balance|held lock freed|lock held when returning to user space|lock held at task exit time"
    r"|[\w/ .:-]{0,80}?still has locks held"
)
_WORKQUEUE_WAITS = ("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue")
_BAD_PAGE_SKIP = (
    "(free|put|get|update|release)_page", "free_unref", "^_*folio", "truncate_inode_pages", "page_frag_free",
    "alloc", "vmap", "page_owner", "bad_page",
)  # fmt: skip


def _lockdep_words(match: re.Match[str]) -> str:
    what = match.group("what")
    return "WARNING: " + ("still has locks held" if what.endswith("still has locks held") else what)


def _kasan_words(match: re.Match[str]) -> str:
    kind = match.group("type")
    return "KASAN: invalid-free" if "free" in kind and "after" not in kind else f"KASAN: {kind}"


def _ubsan_words(match: re.Match[str]) -> str:
    kind = match.group("type")
    return "UBSAN: " + ("undefined-behaviour" if kind.startswith("Undefined") else tidy(kind))


def _panic(
    kind: CrashKind,
    reason: str,
    words: str,
    strategy: Strategy,
    *,
    skip: tuple[str, ...] = (),
    corrupted: str | None = None,
) -> StartRule:
    return rule(kind, "not syncing", _PANIC + reason, words, strategy, companion=True, panic=True, skip=skip,
                corrupted=corrupted)  # fmt: skip


def _panic_rules() -> tuple[StartRule, ...]:
    """Panic lines: inside a report they only end it; alone they are the report (its header lost, or none)."""
    panic = _panic
    return (
        panic(CrashKind.STACK_PROTECTOR, r"stack-protector: Kernel stack is corrupted in: ?(?P<site>.*)",
              "stack-protector: Kernel stack is corrupted", Strategy.PANIC, skip=("stack_chk",)),
        panic(CrashKind.SOFT_LOCKUP, r"softlockup", "BUG: soft lockup", Strategy.INTERRUPTED),
        panic(CrashKind.HUNG_TASK, r"hung_task", "INFO: task hung", Strategy.HANG),
        panic(CrashKind.HARD_LOCKUP, r"(?:Hard LOCKUP|Watchdog detected hard LOCKUP)",
              "watchdog: hard LOCKUP", Strategy.INTERRUPTED),
        panic(CrashKind.RCU_STALL, r"RCU Stall", "INFO: rcu detected stall", Strategy.INTERRUPTED),
        panic(CrashKind.NMI, r"NMI", "NMI: hang", Strategy.INTERRUPTED),
        panic(CrashKind.WARNING, r"(?:\w+: )?panic_on_warn set", "WARNING", Strategy.FAULT),
        panic(CrashKind.PANIC, r"(?:Oops(?: - BUG)?: )?Fatal exception",
              "Kernel panic - not syncing: Fatal exception", Strategy.PANIC,
              corrupted="the report that led to this panic is missing from the console"),
        panic(CrashKind.PANIC, r"kernel stack overflow", "Kernel panic - not syncing: kernel stack overflow",
              Strategy.STALL, skip=("bad_stack",)),
        panic(CrashKind.PANIC, r"corrupted stack end", "Kernel panic - not syncing: corrupted stack end",
              Strategy.STALL, skip=("schedule", "retint_kernel")),
        rule(CrashKind.PANIC, "not syncing", _PANIC + r"(?P<reason>.*)",
             lambda m: "Kernel panic - not syncing: " + tidy(m.group("reason")), Strategy.PANIC,
             companion=True, panic=True, needs_site=False, free_text=True),
    )  # fmt: skip


def _lockdep_rules(prefix: str) -> tuple[StartRule, ...]:
    """Lockdep's reports: "WARNING: ..." today, "INFO: ..." and "BUG: ..." (bracketed) in older kernels."""
    head = f"{prefix}: "
    return (
        rule(CrashKind.LOCKDEP, (head, "-unsafe lock order"), rf"{prefix}: \S+-safe -> \S+-unsafe lock order",
             "possible deadlock", Strategy.STACK),  # the stack where the lock "became irq-safe at:"
        rule(CrashKind.LOCKDEP, f"{head}possible", rf"{prefix}: (?:{_DEADLOCK})", "possible deadlock",
             Strategy.LOCKDEP, skip=_WORKQUEUE_WAITS),
        rule(CrashKind.LOCKDEP, f"{head}inconsistent", rf"{prefix}: inconsistent lock state",
             "inconsistent lock state", Strategy.STACK),
        rule(CrashKind.LOCKDEP, f"{head}Invalid", rf"{prefix}: Invalid wait context", "WARNING: locking bug",
             Strategy.STACK, skip=("lock_sock", "release_sock")),
        rule(CrashKind.LOCKDEP, f"{head}Nested", rf"{prefix}: Nested lock was not taken",
             "WARNING: nested lock was not taken", Strategy.FAULT),
        rule(CrashKind.LOCKDEP, f"{head}suspicious", rf"{prefix}: suspicious RCU usage",
             "WARNING: suspicious RCU usage", Strategy.STACK, skip=("rcu", "kmem", "slab")),
        rule(CrashKind.LOCKDEP, (head, "lock"), rf"{prefix}: (?P<what>{_LOCKDEP_OTHER})", _lockdep_words,
             Strategy.LOCKDEP, skip=("lock_sock", "release_sock")),
    )  # fmt: skip


RULES: tuple[StartRule, ...] = (
    *_panic_rules(),
    # A silent guest the testbed poked with an NMI, and the watchdogs.
    rule(CrashKind.NMI, "NMI", r"NMI received for unknown reason|NMI: (?:IOCK|PCI system) error", "NMI: hang",
         Strategy.INTERRUPTED),
    rule(CrashKind.HARD_LOCKUP, "hard LOCKUP", r"[Ww]atchdog detected hard LOCKUP", "watchdog: hard LOCKUP",
         Strategy.INTERRUPTED),
    rule(CrashKind.SOFT_LOCKUP, "BUG: soft lockup", r"BUG: soft lockup", "BUG: soft lockup",
         Strategy.INTERRUPTED),
    # Sanitizers.
    rule(CrashKind.KASAN, "BUG: KASAN",
         r"BUG: KASAN: (?P<type>double-free or invalid-free|[\w-]+)(?: in (?P<site>.*))?", _kasan_words,
         Strategy.HEADER, skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_")),
    rule(CrashKind.KMSAN, "BUG: KMSAN", r"BUG: KMSAN: (?P<type>[\w-]+)(?: in (?P<site>.*))?",
         lambda m: f"KMSAN: {m.group('type')}", Strategy.HEADER,
         skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$", "^(?:crypto|cipher|drbg|rng)_")),
    rule(CrashKind.UBSAN, "UBSAN:", r"UBSAN: (?P<type>Undefined behaviour|[\w -]{1,60}?) in ", _ubsan_words,
         Strategy.STACK, skip=("ubsan", "overflow")),
    rule(CrashKind.KERNEL_BUG, "BUG: K",
         r"BUG: (?P<tool>KFENCE|KCSAN): (?P<type>[\w :-]{1,60}?) in (?P<site>.*)",
         lambda m: f"{m.group('tool')}: {tidy(m.group('type'))}", Strategy.HEADER),
    # Memory access faults.
    rule(CrashKind.NULL_DEREF, "BUG:", r"BUG: (?:unable to handle )?kernel NULL pointer dereference",
         "BUG: kernel NULL pointer dereference", Strategy.FAULT),
    rule(CrashKind.NULL_DEREF, "handle kernel NULL", r"Unable to handle kernel NULL pointer dereference",
         "BUG: kernel NULL pointer dereference", Strategy.FAULT),
    rule(CrashKind.PAGE_FAULT, "handle kernel",
         r"[Uu]nable to handle kernel (?:paging request|execute from non-executable memory"
         r"|access to user memory|write to read-only memory|data access|instruction fetch)",
         "BUG: unable to handle page fault", Strategy.FAULT),
    rule(CrashKind.PAGE_FAULT, "BUG: unable", r"BUG: unable to handle page fault",
         "BUG: unable to handle page fault", Strategy.FAULT),
    rule(CrashKind.PAGE_FAULT, "handle kernel", r"[Uu]nable to handle kernel",
         "BUG: unable to handle page fault", Strategy.FAULT,
         corrupted="the first line of the report is cut: the kind of fault is missing"),
    rule(CrashKind.PAGE_FAULT, "Unhandled fault", r"Unhandled fault: ", "Unhandled fault", Strategy.FAULT),
    rule(CrashKind.GENERAL_PROTECTION, "protection fault", r"general protection fault(?!.* ip:)",
         "general protection fault", Strategy.FAULT),
    rule(CrashKind.GENERAL_PROTECTION, "[#", r"stack segment: \d+ \[#", "stack segment fault",
         Strategy.FAULT),
    rule(CrashKind.DOUBLE_FAULT, "double fault", r"PANIC: double fault", "PANIC: double fault",
         Strategy.FAULT, companion=True),
    rule(CrashKind.DIVIDE_ERROR, "[#", r"divide[ _]error: \d+ \[#", "divide error", Strategy.FAULT),
    rule(CrashKind.INTERNAL_ERROR, "[#", r"Internal error: (?P<what>[^:\[]{1,80})",
         lambda m: "Internal error: " + tidy(m.group("what")), Strategy.FAULT, companion=True),
    rule(CrashKind.INVALID_OPCODE, "[#", r"invalid opcode: \d+ \[#", "invalid opcode", Strategy.FAULT,
         companion=True),
    rule(CrashKind.OOPS, "[#", r"Oops(?::[^\[]{0,80})?\[#\d+\]", "Oops", Strategy.FAULT, companion=True),
    # Locking: lockdep's reports, before the generic BUG that some of them start with.
    *_lockdep_rules("WARNING"),
    *_lockdep_rules("INFO"),
    *_lockdep_rules("BUG"),
    rule(CrashKind.LOCKDEP, "INFO: trying", r"INFO: trying to register non-static key",
         "INFO: trying to register non-static key", Strategy.STACK, skip=("stack", "lock", "IRQ")),
    # Hangs and stalls.
    rule(CrashKind.HUNG_TASK, "INFO: task",
         r"INFO: task .{1,80}? blocked (?:in I/O wait )?for more than \d+ seconds", "INFO: task hung",
         Strategy.HANG),
    rule(CrashKind.HUNG_TASK, "INFO: task", r"INFO: task .{1,80}? can't die for more than",
         "INFO: task can't die", Strategy.STACK, skip=("schedule",)),
    rule(CrashKind.RCU_STALL, "INFO: rcu_", r"INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stall",
         "INFO: rcu detected stall", Strategy.INTERRUPTED),
    # Data corruption the kernel checks for; their message line comes before or after a WARNING/BUG.
    rule(CrashKind.LIST_CORRUPTION, "corruption", r"(?P<op>h?list_\w+) corruption",
         lambda m: f"{m.group('op')} corruption", Strategy.FAULT),
    rule(CrashKind.REFCOUNT, "refcount_t", r"refcount_t:? (?P<what>[^.,]{1,80}?)(?:\.|,| at |$)",
         lambda m: "refcount_t: " + tidy(m.group("what")), Strategy.FAULT, skip=("refcount", "kobject_")),
    rule(CrashKind.MEMORY_LEAK, "kmemleak: unreferenced", r"kmemleak: unreferenced object", "memory leak",
         Strategy.LEAK),
    rule(CrashKind.MEMORY_LEAK, "kmemleak", r"kmemleak: \d+ new suspected memory leaks", "memory leak",
         Strategy.NONE, companion=True, needs_site=False),
    rule(CrashKind.MEMORY_LEAK, "BUG: memory", r"BUG: memory leak", "memory leak", Strategy.LEAK),
    # The BUGs the kernel names.
    rule(CrashKind.SCHEDULING_WHILE_ATOMIC, "BUG: scheduling", r"BUG: scheduling while atomic",
         "BUG: scheduling while atomic", Strategy.STACK, skip=("schedule",)),
    rule(CrashKind.KERNEL_BUG, "BUG:",
         r"BUG: (?P<lock>spinlock|rwlock) (?P<what>lockup suspected|already unlocked|recursion|cpu recursion"
         r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
         lambda m: f"BUG: {m.group('lock')} {m.group('what')}", Strategy.STACK,
         skip=("spin_", "_lock", "_unlock")),
    rule(CrashKind.KERNEL_BUG, "BUG: using", r"BUG: using (?P<what>\w+)\(\) in preemptible",
         lambda m: f"BUG: using {m.group('what')}() in preemptible code", Strategy.STACK,
         skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu")),
    rule(CrashKind.KERNEL_BUG, "BUG:", r"BUG: (?:TASK )?stack guard page was hit",
         "BUG: stack guard page was hit", Strategy.INTERRUPTED),
    rule(CrashKind.KERNEL_BUG, "BUG: Dentry", r"BUG: Dentry .{0,200}? still in use",
         "BUG: Dentry still in use", Strategy.STACK, needs_site=False),
    rule(CrashKind.KERNEL_BUG, "BUG:",
         r"BUG: (?P<what>Bad rss-counter state|non-zero nr_\w+ on freeing mm|workqueue lockup)",
         lambda m: f"BUG: {tidy(m.group('what'))}", Strategy.NONE, needs_site=False),
    rule(CrashKind.KERNEL_BUG, "BUG: Bad page", r"BUG: Bad page (?P<what>state|cache)",
         lambda m: f"BUG: Bad page {m.group('what')}", Strategy.STACK, skip=_BAD_PAGE_SKIP),
    rule(CrashKind.KERNEL_BUG, "BUG: workqueue", r"BUG: workqueue leaked lock or atomic",
         "BUG: workqueue leaked lock or atomic", Strategy.NONE, site_line=r"last function: (?P<site>\w+)"),
    # BUG() and WARN().
    rule(CrashKind.KERNEL_BUG, "kernel BUG", r"kernel BUG at (?P<src>[^\s:!]+)", "kernel BUG", Strategy.FAULT,
         skip=("^skb_",)),
    rule(CrashKind.WARNING, "WARNING: CPU", r"WARNING: CPU: \d+ PID: \d+ at (?P<src>\S+)\s+(?P<site>.*)",
         "WARNING", Strategy.WARNING),  # 3.x to 6.x
    rule(CrashKind.WARNING, ("WARNING: ", ", CPU#"),
         r"WARNING: (?:\[.{0,200}?\] )?(?P<src>[\w/.+-]+:\d+) at (?P<site>[^,]*), CPU#",
         "WARNING", Strategy.WARNING),  # 6.17 and later
    rule(CrashKind.WARNING, "WARNING: at", r"WARNING: at (?P<src>\S+)\s+(?P<site>.*)", "WARNING",
         Strategy.WARNING),  # 2.6
    rule(CrashKind.WARNING, "WARNING: CPU", r"WARNING: CPU: \d+ PID: \d+", "WARNING", Strategy.WARNING),
    rule(CrashKind.WARNING, "WARNING: kernel stack",
         r"WARNING: kernel stack (?:regs|frame pointer) .{0,120}has bad",
         "WARNING: kernel stack has bad value", Strategy.NONE, needs_site=False),
    # Any other BUG: SLUB's "BUG kmalloc-64 (Not tainted): ...", then "BUG: ..." at the start of the line.
    *(
        rule(CrashKind.KERNEL_BUG, ("BUG ", taint), r"BUG [\w-]+ \([^)]{0,80}\): (?P<what>.+)",
             lambda m: "BUG: " + description(m.group("what")), Strategy.STACK, anchored=True, free_text=True)
        for taint in ("(Not tainted):", "(Tainted:")
    ),
    rule(CrashKind.KERNEL_BUG, "BUG:", r"BUG:\s*(?P<what>.*)",
         lambda m: ("BUG: " + description(m.group("what"))).rstrip(": "), Strategy.FAULT, anchored=True,
         free_text=True),
)  # fmt: skip
