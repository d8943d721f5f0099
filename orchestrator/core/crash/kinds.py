"""What kind of kernel failure a console report describes, and which kinds mean the kernel is broken."""

from enum import StrEnum


class CrashKind(StrEnum):
    """The kind of a kernel report, named after the line that starts it."""

    NULL_DEREF = "null_pointer_dereference"  # BUG: kernel NULL pointer dereference; arm64: Unable to handle
    PAGE_FAULT = "page_fault"  # BUG: unable to handle page fault / kernel paging request
    GENERAL_PROTECTION = "general_protection_fault"  # general protection fault, stack segment fault
    KERNEL_BUG = "kernel_bug"  # kernel BUG at file:line, and other "BUG: ..." lines
    SOFT_LOCKUP = "soft_lockup"  # watchdog: BUG: soft lockup - CPU#n stuck
    HARD_LOCKUP = "hard_lockup"  # watchdog: Watchdog detected hard LOCKUP on cpu n
    HUNG_TASK = "hung_task"  # INFO: task ... blocked for more than n seconds
    RCU_STALL = "rcu_stall"  # rcu: INFO: rcu_preempt detected stalls
    WARNING = "warning"  # WARNING: CPU: n PID: n at file:line (and the older forms)
    OOPS = "oops"  # Oops: ... [#n] without a more specific first line
    PANIC = "panic"  # only a Kernel panic line
    KASAN = "kasan"  # BUG: KASAN: use-after-free / out-of-bounds / ...
    KMSAN = "kmsan"  # BUG: KMSAN: uninit-value ...
    UBSAN = "ubsan"  # UBSAN: array-index-out-of-bounds / shift-out-of-bounds / ...
    LOCKDEP = "lockdep"  # possible deadlock, inconsistent lock state, suspicious RCU usage, ...
    NMI = "nmi"  # a panic forced by an NMI (the testbed injects one into a hung guest)
    STACK_PROTECTOR = "stack_protector"  # Kernel panic - not syncing: stack-protector: ... corrupted in
    DIVIDE_ERROR = "divide_error"  # divide error: 0000 [#n]
    INVALID_OPCODE = "invalid_opcode"  # invalid opcode: 0000 [#n] without a kernel BUG line before it
    DOUBLE_FAULT = "double_fault"  # PANIC: double fault
    LIST_CORRUPTION = "list_corruption"  # list_add corruption / list_del corruption
    REFCOUNT = "refcount"  # refcount_t: underflow; use-after-free, saturated, ...
    MEMORY_LEAK = "memory_leak"  # kmemleak: unreferenced object
    SCHEDULING_WHILE_ATOMIC = "scheduling_while_atomic"  # BUG: scheduling while atomic
    INTERNAL_ERROR = "internal_error"  # arm64: Internal error: Oops / synchronous external abort


SURVIVABLE_KINDS = frozenset(
    {
        CrashKind.WARNING,
        CrashKind.LOCKDEP,
        CrashKind.UBSAN,
        CrashKind.MEMORY_LEAK,
        CrashKind.REFCOUNT,
        CrashKind.LIST_CORRUPTION,  # a WARNING unless CONFIG_BUG_ON_DATA_CORRUPTION makes it a BUG
    }
)
"""Kinds the kernel prints and runs on after (unless the report shows it died anyway: an oops
marker or a panic). Every other kind means the kernel is broken."""
