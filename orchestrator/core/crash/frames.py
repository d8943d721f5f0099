"""Stack frames in every format kernels print, and which frames name nobody's bug.

Formats: ``func+0x1f/0x280 [mod]`` (x86-64 and arm64 since 4.x), with ``? `` for unreliable frames,
``[<ffffffff810a376f>]`` address prefixes (3.x and older arm64), `` file.c:123`` suffixes and
``[inline]`` frames (symbolized reports), build ids in the module bracket (6.x), and the
``[<c0123456>] (func) from [<...>]`` form of 32-bit arm. The faulting site is read from
``RIP: 0010:func``, the old ``IP: [<...>] func``, arm64 ``pc : func`` / ``PC is at func`` and
powerpc ``NIP [...] func``.

The guilty frame is the first that is not crash machinery, sanitizer, locking, allocation or generic
library code: the skip lists below, after syzkaller's (pkg/report/linux.go), anchored at the start
of the name so that a module's own ``tbs_wait_channel`` is never mistaken for ``wait_...``.
"""

import re
from dataclasses import dataclass

_OFFSET = r"\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+"
_NAME = r"[A-Za-z_$][\w$.]*"
_MODULE = r"\[(?P<module>[\w-]+)(?:\s+[0-9a-fA-F]+)?\]"
_FILE = r"[\w/.+-]+\.\w+:\d+(?::\d+)?"
_ADDRESS = r"\[\s*<?(?:0x)?[0-9a-fA-F]+>?\]\s*"

_FRAME = re.compile(
    rf"^\s*(?:{_ADDRESS}){{0,2}}(?P<questionable>\?\s+)?(?P<function>{_NAME}){_OFFSET}"
    rf"(?:\(\))?(?:\s+{_FILE})?(?:\s+{_MODULE})?"
)
_INLINE_FRAME = re.compile(rf"^\s*(?P<questionable>\?\s+)?(?P<function>{_NAME})\s+{_FILE}\s+\[inline\]")
_ARM32_FRAME = re.compile(
    rf"^\s*\[<[0-9a-fA-F]+>\]\s+\((?P<function>{_NAME})(?:{_OFFSET})?(?:\s+{_MODULE})?\) from "
)
_ARM32_CALLER = re.compile(
    rf"\) from \[<[0-9a-fA-F]+>\]\s+\((?P<function>{_NAME})(?:{_OFFSET})?(?:\s+{_MODULE})?\)"
)
# Where a token names a function: after "RIP: 0010:", "at", "in:", "pc : " ...
_SITE = re.compile(
    rf"(?:{_ADDRESS})*(?P<function>{_NAME})(?:{_OFFSET})(?:\(\))?(?:\s+{_FILE})?(?:\s+{_MODULE})?"
)
_REGISTER_SITE = re.compile(
    r"^(?:(?:R|E)?IP:\s*(?:(?P<segment>[0-9a-fA-F]{4}):)?|pc\s*:|PC is at|NIP\s*\[[0-9a-fA-F]+\])\s*"
)
_USER_SEGMENTS = frozenset({"0033", "0023", "0073", "002b"})

_SYSCALL_PREFIX = re.compile(
    r"^(?:__x64_sys_|__ia32_sys_|__arm64_sys_|__se_sys_|__do_sys_|__do_compat_sys_|__se_compat_sys_"
    r"|compat_SyS_|compat_SYSC_|__sys_|____sys_|___sys_|ksys_|SyS_|SYSC_|sys_)"
)


@dataclass(frozen=True, slots=True)
class Frame:
    """A function on a stack, named canonically: no ``.cold``/``.isra.0`` suffix, no syscall prefix."""

    function: str
    module: str | None = None
    questionable: bool = False  # printed with "? ": the unwinder is not sure it is on the stack
    inlined: bool = False  # "[inline]" (symbolized reports): named by the function it was inlined into,
    # as an unsymbolized console would, so that both give the same title


def canonical_name(name: str) -> str:
    """``tbs_parse.isra.0`` -> ``tbs_parse``; ``__do_sys_finit_module`` -> ``finit_module``."""
    base = name.split(".", 1)[0]
    stripped = _SYSCALL_PREFIX.sub("", base, count=1)
    return stripped or base


def _frame(match: re.Match[str], *, inlined: bool = False) -> Frame:
    module = match.groupdict().get("module")
    return Frame(
        canonical_name(match.group("function")),
        module,
        bool(match.groupdict().get("questionable")),
        inlined,
    )


def parse_frame(text: str) -> Frame | None:
    """A stack trace line as a frame; None for any other line."""
    if "+0x" in text:
        found = _FRAME.match(text) or _ARM32_FRAME.match(text)
        return _frame(found) if found else None
    if "[inline]" in text:
        found = _INLINE_FRAME.match(text)
        return _frame(found, inlined=True) if found else None
    return None


def parse_arm32_caller(text: str) -> Frame | None:
    """32-bit arm prints "(callee) from (caller+0x..)": the caller is a frame too (tail calls hide some)."""
    found = _ARM32_CALLER.search(text) if ") from [<" in text else None
    return _frame(found) if found else None


def parse_site(text: str) -> Frame | None:
    """A ``func+0x../0x.. [mod]`` token at the start of ``text`` (after an optional address)."""
    found = _SITE.match(text.lstrip())
    return _frame(found) if found else None


def parse_register_site(text: str) -> Frame | None:
    """The kernel-mode faulting site of a register dump line (``RIP: 0010:f+0x1/0x2 [m]``, ``pc : f``)."""
    register = _REGISTER_SITE.match(text)
    if register is None or register.group("segment") in _USER_SEGMENTS:
        return None
    return parse_site(text[register.end() :])


def _anchored(*patterns: str) -> re.Pattern[str]:
    return re.compile("^(?:" + "|".join(patterns) + ")")


# Crash machinery, sanitizers, printk, locking, allocation, generic library code, interrupt entry.
GENERAL_SKIP = _anchored(
    r"(?:__)?dump_stack\w*$", r"show_(?:stack|trace|regs)\w*$", r"__show_regs$", r"dump_backtrace\w*$",
    r"(?:arch_)?stack_trace_\w+$", r"arch_stack_walk$", r"unwind_backtrace$", r"(?:v|nmi_|__)?panic$",
    r"check_panic_on_warn$", r"__warn\w*$", r"warn_slowpath\w*$", r"(?:__)?report_bug$", r"handle_bug$",
    r"fixup_bug$", r"do_error_trap$", r"do_trap\w*$", r"do_invalid_op$", r"do_int3\w*$", r"(?:asm_)?exc_\w+$",
    r"invalid_op$", r"(?:__)?die(?:_\w+)?$", r"oops_\w+$", r"page_fault_oops$", r"kernelmode_fixup_or_oops$",
    r"do_general_protection$", r"__virt_to_phys\w*$",
    r"do_mem_abort$", r"el1_(?:abort|da|ia|dbg|sync\w*|interrupt)$", r"el1h_64_\w+$",
    r"do_translation_fault$", r"do_bad_area$", r"(?:__)?do_kernel_fault$", r"die_kernel_fault$",
    r"bug_handler$", r"call_break_hook$", r"brk_handler$", r"do_debug_exception$", r"gic_handle_irq$",
    r"call_on_irq_stack$", r"do_interrupt_handler$", r"arm64_notify_die$",
    r"(?:__)?kasan\w*$", r"__asan\w*$", r"(?:__)?kmsan\w*$", r"__msan\w*$", r"__sanitizer\w*$",
    r"(?:__)?ubsan\w*$", r"(?:__)?kcsan\w*$", r"(?:__)?kfence\w*$", r"__hwasan\w*$",
    r"check_memory_region\w*$", r"print_address_description\w*$", r"print_report$", r"describe_object\w*$",
    r"end_report$", r"(?:__)?check_heap_object$", r"check_object\w*$", r"__check_object_size\w*$",
    r"usercopy_abort$", r"__stack_chk_fail\w*$", r"__fortify_\w+$", r"fortify_\w+$",
    r"_?_?v?printk\w*$", r"vprintk_emit$", r"console_unlock$",
    r"_?dev_(?:printk|info|notice|warn|err|alert|crit|emerg)\w*$",
    r"print_hex_dump\w*$", r"hex_dump_to_buffer$", r"print_modules$", r"print_tainted$",
    r"print_oops_end_marker$", r"print_irqtrace_events$", r"kmsg_dump\w*$", r"(?:__)?crash_kexec$",
    r"(?:__)?lock_acquire\w*$", r"(?:__)?lock_release\w*$", r"lock_acquired$", r"lock_contended$",
    r"(?:__)?lockdep_\w+$", r"mark_lock\w*$", r"(?:reacquire|mark)_held_locks$", r"print_\w*bug\w*$",
    r"check_noncircular$", r"check_prevs?_add$", r"validate_chain$", r"lock_is_held\w*$",
    r"debug_check_no_locks_\w+$", r"(?:_|__)?raw_(?:spin|read|write)_\w+$",
    r"do_raw_(?:spin|read|write)_\w+$",
    r"(?:native_)?queued_(?:spin|read|write)_\w+$", r"__pv_queued_spin\w*$", r"arch_spin_\w+$",
    r"(?:__)?(?:spin|read|write)_(?:un)?lock\w*$", r"(?:__)?(?:spin|read|write)_trylock\w*$",
    r"(?:__)?mutex_(?:un)?lock\w*$", r"mutex_trylock\w*$", r"__mutex_\w+$", r"(?:__)?rt_mutex\w*$",
    r"rt_spin\w*$", r"(?:__)?down(?:_(?:read|write|interruptible|killable|timeout|trylock)\w*)?$",
    r"(?:__)?up(?:_(?:read|write))?$", r"(?:__)?rwsem_\w+$", r"percpu_(?:down|up)_\w+$", r"osq_\w+$",
    r"owner_on_cpu$", r"(?:__|_)?local_bh_\w+$", r"(?:trace|lockdep)_(?:hard|soft)irqs?_\w+$",
    r"(?:__)?kmalloc\w*$", r"(?:__)?kmem_cache_\w+$", r"(?:__)?kzalloc\w*$", r"kcalloc\w*$",
    r"(?:__)?krealloc\w*$", r"(?:__)?kv[mz]alloc\w*$", r"kvcalloc$", r"(?:__)?v[mz]alloc\w*$",
    r"(?:_{1,3})?slab_\w+$", r"allocate_slab$", r"new_slab$", r"(?:__)?alloc_pages?\w*$",
    r"__get_free_pages$", r"get_zeroed_page$", r"get_page_from_freelist$", r"(?:__)?folio_alloc\w*$",
    r"kmemdup\w*$", r"kstrn?dup\w*$", r"memdup\w*$", r"kv?asprintf\w*$", r"should_fail\w*$",
    r"kv?free$", r"kfree_skb\w*$",
    r"(?:__)?mem(?:cpy|move|set|cmp|chr|scan)\w*$", r"bcmp$",
    r"(?:__)?str(?:n?cpy|lcpy|scpy\w*|n?len|n?cmp|n?casecmp|n?cat|lcat|r?chr|nchr|n?str|n?dup)$",
    r"(?:__)?str(?:sep|c?spn|pbrk)$",
    r"(?:_|__|raw_)?copy_(?:to|from|in)_user\w*$", r"copy_user_\w+$", r"(?:__)?(?:get|put)_user\w*$",
    r"rep_movs_alternative$", r"_?copy_(?:page_|folio_)?(?:to|from)_iter\w*$",
    r"(?:__)?might_(?:sleep|fault|resched)\w*$", r"__might_\w+$",
    r"(?:__)?list_(?:add|del|replace|move|splice)\w*$",
    r"__list_\w+_valid\w*$", r"(?:__)?hlist_\w+$", r"(?:__)?rb_\w+$", r"(?:__)?refcount_\w+$",
    r"(?:__)?kref_\w+$", r"(?:arch_|raw_)?atomic(?:64|_long)?_\w+$",
    r"(?:__)?(?:test_and_)?(?:set|clear|change|test)_bit\w*$",
    r"v?s[cn]?n?printf$", r"vsn?printf$", r"format_decode$", r"pointer$", r"string(?:_\w+)?$", r"number$",
    r"(?:__)?x86_indirect_thunk\w*$", r"__x86_return_thunk$", r"__pfx_\w+$", r"read_word_at_a_time$",
    r"__phys_addr\w*$", r"__wake_up\w*$",
    r"wake_up(?:_interruptible\w*|_all|_locked|_bit|_var|_process|_sync\w*|_poll)?$",
    r"complete$", r"(?:__)?(?:queue|flush)_(?:delayed_)?work\w*$",
    r"insert_work$", r"__cancel_work\w*$", r"cancel_(?:delayed_)?work\w*$", r"(?:__)?(?:del|mod)_timer\w*$",
    r"__?timer_delete\w*$", r"kobject_\w+$", r"(?:__)?put_device$", r"(?:__)?debug_object\w*$",
    r"debug_print_object$", r"(?:__)?ref_tracker\w*$", r"preempt_count_\w+$",
    r"(?:__)?rcu_read_(?:un)?lock\w*$",
    r"rcu_lock_\w+$", r"(?:asm_)?sysvec_\w+$", r"__sysvec_\w+$", r"(?:asm_)?common_interrupt\w*$",
    r"(?:__)?irq_exit\w*$", r"(?:__)?do_softirq\w*$", r"(?:__)?handle_softirqs?$", r"(?:__)?hrtimer_\w+$",
    r"__run_hrtimer$", r"(?:smp_|local_)?apic_timer_interrupt$", r"ret_from_intr$", r"(?:__)?handle_irq\w*$",
    r"(?:__)?nmi_\w+$", r"(?:default_do|exc|do|end_repeat|first|repeat)_nmi\w*$", r"unknown_nmi_error\w*$",
    r"nmi$", r"watchdog_timer_fn$", r"watchdog$", r"check_hung_\w+$",
    r"(?:__|preempt_|io_)?schedule\w*$", r"_?_?cond_resched\w*$", r"(?:do_|__)?wait_for_common\w*$",
    r"wait_for_completion\w*$", r"[mu]sleep\w*$", r"finish_wait$", r"prepare_to_wait\w*$",
)

# Core-kernel names skipped when they merely contain these (syzkaller's skipPatterns, pkg/report/linux.go).
# They apply to core-kernel frames only: a third-party module names its functions its own way, and
# its "tbs_wait_channel" or "tbs_alloc_table" is exactly what its developers need to read.
CORE_SUBSTRINGS: tuple[str, ...] = (
    "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
    "check_memory_region",
    "check_heap_object", "check_object", "read_word_at_a_time", "(read|write)_once_.*nocheck",
    "print_address_description", "panic", "invalid_op", "report_bug", "fixup_bug", "print_report",
    "print_usage_bug", "do_error", "_trap$|do_trap", "show_stack", "dump_stack", "walk_stack",
    "dump_backtrace",
    "warn_slowpath", "warn_alloc", "warn_bogus", "__warn", "alloc_page", "k?v?(?:m|z|c)alloc", "krealloc",
    "kmem_cache", "allocate_slab", "__alloc_frozen_pages", "folio_(?:alloc|unlock)", "filemap_alloc_folio",
    "__filemap_get_folio", "find_or_create_page", "do_read_cache_folio", "read_cache_page",
    "pagecache_get_page",
    "grab_cache_page_write_begin", "slab_", "debug_object", "timer_is_static_object", "work_is_static_object",
    "__might_fault", "print_unlock", "imbalance_bug", "lockdep", "bh_enable", "bh_disable", "perf_trace",
    "lock_acquire", "lock_release", "lock_class", "mark_lock", "(reacquire|mark)_held_locks", "raw_spin_rq",
    "spin_lock", "spin_trylock", "spin_unlock", "read_lock", "read_trylock", "write_lock", "write_trylock",
    "read_unlock", "write_unlock", "^down$", "down_read", "down_write", "down_trylock", "up_read", "up_write",
    "^mutex_", "^__mutex_", "^rt_mutex_", "owner_on_cpu", "osq_lock", "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)", "(set|clear|change|test)_bit",
    "__wake_up", "^refcount_", "^kref_", "ref_tracker", "seqprop_assert", "memcpy", "memcmp", "memset",
    "memchr", "memmove", "memdup", "strcmp", "strncmp", "strcpy", "strlcpy", "strncpy", "strscpy", "strlen",
    "strstr", "strnstr", "strnlen", "strchr", "strdup", "strndup", "copy_to_user", "copy_from_user",
    "copy_to_iter", "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter", "copy_folio_to_iter",
    "^copyin$", "^copyout$", "put_user", "get_user", "might_fault", "might_sleep", "list_add", "list_del",
    "list_replace", "list_move", "list_splice", "^rb_", "^__rb_", "_indirect_thunk_", "string", "pointer",
    "snprintf", "scnprintf", "kasprintf", "kvasprintf", "printk", "va_format", "dev_info", "dev_notice",
    "dev_warn", "dev_err", "dev_alert", "dev_crit", "dev_emerg", "program_check_exception",
    "program_check_common", "del_timer", "flush_work", "__cancel_work_timer", "cancel_work_sync",
    "try_to_grab_pending", "flush_workqueue", "drain_workqueue", "destroy_workqueue", "queue_work",
    "finish_wait", "kthread_stop", "kobject_", "add_uevent_var", "get_device_parent", "device_add",
    "device_del", "device_unregister", "device_destroy", "device_release", "devres_release_all",
    "hwrng_unregister", "i2c_del_adapter", "__unregister_client", "device_for_each_child",
    "rollback_registered", "unregister_netdev", "sysfs_remove", "device_remove_file", "tty_unregister_device",
    "dummy_urb_enqueue", "usb_kill_urb", "usb_kill_anchored_urbs", "usb_control_msg", "usb_hcd_submit_urb",
    "usb_submit_urb", "^complete$", "wait_for_completion", "^kv?free$", "kfree_skb", "readb$", "readw$",
    "readl$", "readq$", "writeb$", "writew$", "writel$", "writeq$", "logic_in", "logic_out", "^crc\\d+",
    "crc_itu_t", "__might_resched", "assertfail", "^iput$", "^iput_final$", "^ihold$", "hex_dump_to_buffer",
    "print_hex_dump", "^klist_", "(trace|lockdep)_(hard|soft)irq", "^(un)?lock_page",
    "stack_trace_consume_entry",
    "arch_stack_walk", "stack_trace_save", "insert_work", "__queue_delayed_work", "queue_delayed_work_on",
    "ida_free", "do_(kernel|translation)_fault", "do_mem_abort", "el1_abort", "el1h_64_sync(?:_handler)?",
    "print_tainted", "xas_(?:start|load|find)", "find_lock_entries", "truncate_inode_pages_range",
    "__phys_addr",
    "__fortify_report", "cleanup_srcu_struct", "rhashtable_lookup", "extract_(user|iter)_to_sg", "drop_nlink",
    "^get_taint$", "^put_device$", "lock_timer_base", "__timer_delete_sync", "sk_stop_timer_sync",
    "__mod_timer", "fast_dput", "dput", "mark_buffer_dirty",
)  # fmt: skip
CORE_SKIP = re.compile("|".join(CORE_SUBSTRINGS))

# A task that sleeps too long names where it waited, not the waiting machinery (syzkaller's hang list).
HANG_SKIP = _anchored(
    r"kthread$", r"ret_from_fork\w*$", r"worker_thread$", r"smpboot_thread_fn$", r"(?:__)?synchronize_\w+$",
    r"(?:__)?flush_\w+$", r"(?:__)?wait_(?:on|event|for|woken)\w*$", r"(?:__)?folio_wait\w*$",
    r"(?:__)?lock_page\w*$", r"(?:__)?lock_sock\w*$", r"context_switch$", r"__switch_to\w*$",
    r"(?:__)?cancel_\w*work\w*$", r"rcu_barrier\w*$", r"(?:__)?rcu_\w+$", r"(?:__)?percpu_rwsem\w*$",
)
HANG_SUBSTRINGS = (
    "sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait", "synchronize",
    "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier",
)  # fmt: skip
# Waits that many hangs share: syzkaller groups them under one name.
HANG_BUCKETS = (
    ("rtnl_lock", "rtnl_lock"),
    ("synchronize_rcu", "synchronize_rcu"),
    ("synchronize_srcu", "synchronize_rcu"),
    ("synchronize_net", "synchronize_rcu"),
    ("synchronize_sched", "synchronize_rcu"),
)
STALL_SKIP = _anchored(r"(?:__)?rcu_\w+$", r"(?:__)?sched_clock\w*$", r"update_process_times$", r"tick_\w+$")
# Where a stalled CPU's loop was dispatched from: the frame above it names the loop (syzkaller's anchors).
STALL_ANCHORS = re.compile(
    "process_one_work|do_syscall_|do_fast_syscall_|sysenter_dispatch|tracesys_phase2|el0_svc_handler"
    "|invoke_syscall|ret_fast_syscall|netif_receive_skb|do_softirq|call_timer_fn|_run_timers"
    "|run_timer_softirq"
    "|hrtimer_run|run_ksoftirqd|smpboot_thread_fn|^kthread$|start_secondary|cpu_startup_entry|ret_from_fork"
    "|vfs_write|vfs_read|vfs_iter_read|vfs_iter_write|do_iter_read|do_iter_write|call_read_iter"
    "|call_write_iter"
    "|new_sync_read|new_sync_write|vfs_ioctl|ksys_ioctl|compat_ioctl|compat_sys_ioctl|blkdev_driver_ioctl"
    "|blkdev_ioctl|do_iter_readv_writev|^call_mmap|mmap_region|do_mmap|do_dentry_open|vfs_open|^sock_sendmsg"
    "|^sock_recvmsg|^sock_release|^__sock_release|^setsockopt$|kernel_setsockopt|sock_common_setsockopt"
    "|^listen$|kernel_listen|sk_common_release|^sock_mmap|^accept$|kernel_accept|^sock_do_ioctl|^sock_ioctl"
    "|^compat_sock_ioctl|^nfnetlink_rcv_msg|^rtnetlink_rcv_msg|^netlink_dump"
    "|^(sys_)?(socketpair|connect|ioctl)"
    "|__do_fault|do_page_fault|^page_fault$|__fput|task_work_run|exit_to_usermode|smp_call_function"
    "|tasklet_action|tasklet_hi_action"
)
LEAK_SKIP = _anchored(r"kmemleak_\w+$", r"(?:__)?create_object\w*$", r"(?:__)?alloc_skb\w*$", r"pcpu_\w+$")


@dataclass(frozen=True)
class SkipList:
    """Which frames a kind of report looks past."""

    anchored: re.Pattern[str] | None = None  # for every frame, matched at the start of the name
    core: re.Pattern[str] | None = None  # for core-kernel frames only, searched anywhere in the name

    def skips(self, frame: Frame) -> bool:
        """The frame names crash machinery or generic code (or is unreliable): not the guilty one."""
        if frame.questionable or frame.inlined or GENERAL_SKIP.match(frame.function):
            return True
        if self.anchored is not None and self.anchored.match(frame.function):
            return True
        if frame.module is None:
            if CORE_SKIP.search(frame.function):
                return True
            return self.core is not None and self.core.search(frame.function) is not None
        return False


def substrings(*patterns: str) -> re.Pattern[str] | None:
    return re.compile("|".join(patterns)) if patterns else None
