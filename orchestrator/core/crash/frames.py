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
_ARM32_FRAME = re.compile(rf"^\s*\[<[0-9a-fA-F]+>\]\s+\((?P<function>{_NAME}){_OFFSET}(?:\s+{_MODULE})?\) from ")
# Where a token names a function: after "RIP: 0010:", "at", "in:", "pc : " ...
_SITE = re.compile(rf"(?:{_ADDRESS})*(?P<function>{_NAME})(?:{_OFFSET})(?:\(\))?(?:\s+{_FILE})?(?:\s+{_MODULE})?")
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


def canonical_name(name: str) -> str:
    """``tbs_parse.isra.0`` -> ``tbs_parse``; ``__do_sys_finit_module`` -> ``finit_module``."""
    base = name.split(".", 1)[0]
    stripped = _SYSCALL_PREFIX.sub("", base, count=1)
    return stripped or base


def _frame(match: re.Match[str]) -> Frame:
    module = match.groupdict().get("module")
    return Frame(
        canonical_name(match.group("function")),
        module,
        bool(match.groupdict().get("questionable")),
    )


def parse_frame(text: str) -> Frame | None:
    """A stack trace line as a frame; None for any other line."""
    if "+0x" in text:
        found = _FRAME.match(text) or _ARM32_FRAME.match(text)
        return _frame(found) if found else None
    if "[inline]" in text:
        found = _INLINE_FRAME.match(text)
        return _frame(found) if found else None
    return None


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
    r"(?:arch_)?stack_trace_\w+$", r"arch_stack_walk$", r"(?:__)?unwind_\w+$", r"(?:v|nmi_)?panic$",
    r"check_panic_on_warn$", r"__warn\w*$", r"warn_slowpath\w*$", r"(?:__)?report_bug$", r"handle_bug$",
    r"fixup_bug$", r"do_error_trap$", r"do_trap\w*$", r"do_invalid_op$", r"do_int3\w*$", r"(?:asm_)?exc_\w+$",
    r"invalid_op$", r"(?:__)?die(?:_\w+)?$", r"oops_\w+$", r"page_fault_oops$", r"no_context$",
    r"(?:__)?bad_area\w*$", r"do_(?:user|kern)_addr_fault$", r"kernelmode_fixup_or_oops$",
    r"(?:async_)?page_fault$", r"(?:__)?do_page_fault$", r"handle_page_fault$", r"do_general_protection$",
    r"do_mem_abort$", r"el1_(?:abort|da|ia|dbg|sync\w*|interrupt)$", r"el1h_64_\w+$",
    r"do_translation_fault$", r"do_bad_area$", r"(?:__)?do_kernel_fault$", r"die_kernel_fault$",
    r"bug_handler$", r"call_break_hook$", r"brk_handler$", r"do_debug_exception$", r"gic_handle_irq$",
    r"call_on_irq_stack$", r"do_interrupt_handler$", r"arm64_notify_die$",
    r"(?:__)?kasan\w*$", r"__asan\w*$", r"(?:__)?kmsan\w*$", r"__msan\w*$", r"__sanitizer\w*$",
    r"(?:__)?ubsan\w*$", r"(?:__)?kcsan\w*$", r"(?:__)?kfence\w*$", r"__hwasan\w*$",
    r"check_memory_region\w*$", r"print_address_description\w*$", r"print_report$", r"describe_object\w*$",
    r"end_report$", r"(?:__)?check_heap_object$", r"check_object\w*$", r"__check_object_size\w*$",
    r"usercopy_abort$", r"__stack_chk_fail\w*$", r"__fortify_\w+$", r"fortify_\w+$",
    r"_?_?v?printk\w*$", r"vprintk_emit$", r"console_unlock$", r"_?dev_(?:printk|info|notice|warn|err|alert|crit|emerg)\w*$",
    r"print_hex_dump\w*$", r"hex_dump_to_buffer$", r"print_modules$", r"print_tainted$",
    r"print_oops_end_marker$", r"print_irqtrace_events$", r"kmsg_dump\w*$", r"(?:__)?crash_kexec$",
    r"(?:__)?lock_acquire\w*$", r"(?:__)?lock_release\w*$", r"lock_acquired$", r"lock_contended$",
    r"(?:__)?lockdep_\w+$", r"mark_lock\w*$", r"(?:reacquire|mark)_held_locks$", r"print_\w*bug\w*$",
    r"check_noncircular$", r"check_prevs?_add$", r"validate_chain$", r"lock_is_held\w*$",
    r"debug_check_no_locks_\w+$", r"(?:_|__)?raw_(?:spin|read|write)_\w+$", r"do_raw_(?:spin|read|write)_\w+$",
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
    r"(?:__)?str(?:n?cpy|lcpy|scpy\w*|n?len|n?cmp|n?casecmp|n?cat|lcat|r?chr|nchr|n?str|n?dup|sep|c?spn|pbrk)$",
    r"(?:_|__|raw_)?copy_(?:to|from|in)_user\w*$", r"copy_user_\w+$", r"(?:__)?(?:get|put)_user\w*$",
    r"rep_movs_alternative$", r"_?copy_(?:page_|folio_)?(?:to|from)_iter\w*$",
    r"(?:__)?might_(?:sleep|fault|resched)\w*$", r"__might_\w+$", r"(?:__)?list_(?:add|del|replace|move|splice)\w*$",
    r"__list_\w+_valid\w*$", r"(?:__)?hlist_\w+$", r"(?:__)?rb_\w+$", r"(?:__)?refcount_\w+$",
    r"(?:__)?kref_\w+$", r"(?:arch_|raw_)?atomic(?:64|_long)?_\w+$", r"(?:__)?(?:test_and_)?(?:set|clear|change|test)_bit\w*$",
    r"v?s[cn]?n?printf$", r"vsn?printf$", r"format_decode$", r"pointer$", r"string(?:_\w+)?$", r"number$",
    r"(?:__)?x86_indirect_thunk\w*$", r"__x86_return_thunk$", r"__pfx_\w+$", r"read_word_at_a_time$",
    r"__phys_addr\w*$", r"(?:__)?wake_up\w*$", r"complete$", r"(?:__)?(?:queue|flush)_(?:delayed_)?work\w*$",
    r"insert_work$", r"__cancel_work\w*$", r"cancel_(?:delayed_)?work\w*$", r"(?:__)?(?:del|mod)_timer\w*$",
    r"__?timer_delete\w*$", r"kobject_\w+$", r"(?:__)?put_device$", r"(?:__)?debug_object\w*$",
    r"debug_print_object$", r"(?:__)?ref_tracker\w*$", r"preempt_count_\w+$", r"(?:__)?rcu_read_(?:un)?lock\w*$",
    r"rcu_lock_\w+$", r"(?:asm_)?sysvec_\w+$", r"__sysvec_\w+$", r"(?:asm_)?common_interrupt\w*$",
    r"(?:__)?irq_exit\w*$", r"(?:__)?do_softirq\w*$", r"(?:__)?handle_softirqs?$", r"(?:__)?hrtimer_\w+$",
    r"__run_hrtimer$", r"(?:smp_|local_)?apic_timer_interrupt$", r"ret_from_intr$", r"(?:__)?handle_irq\w*$",
    r"(?:__)?nmi_\w+$", r"(?:default_do|exc|do|end_repeat|first|repeat)_nmi\w*$", r"unknown_nmi_error\w*$",
    r"nmi$", r"watchdog_timer_fn$", r"watchdog$", r"check_hung_\w+$",
    r"(?:__|preempt_|io_)?schedule\w*$", r"_?_?cond_resched\w*$", r"(?:do_|__)?wait_for_common\w*$",
    r"wait_for_completion\w*$", r"[mu]sleep\w*$", r"finish_wait$", r"prepare_to_wait\w*$",
)

# A task that sleeps too long names where it waited, not the waiting machinery (syzkaller's hang list).
HANG_SKIP = _anchored(
    r"kthread$", r"ret_from_fork\w*$", r"worker_thread$", r"smpboot_thread_fn$", r"(?:__)?synchronize_\w+$",
    r"(?:__)?flush_\w+$", r"(?:__)?wait_(?:on|event|for|woken)\w*$", r"(?:__)?folio_wait\w*$",
    r"(?:__)?lock_page\w*$", r"(?:__)?lock_sock\w*$", r"context_switch$", r"__switch_to\w*$",
    r"(?:__)?cancel_\w*work\w*$", r"rcu_barrier\w*$", r"(?:__)?rcu_\w+$", r"(?:__)?percpu_rwsem\w*$",
    r"rtnl_lock$",
)
STALL_SKIP = _anchored(r"(?:__)?rcu_\w+$", r"(?:__)?sched_clock\w*$", r"update_process_times$", r"tick_\w+$")
LEAK_SKIP = _anchored(r"kmemleak_\w+$", r"(?:__)?create_object\w*$", r"(?:__)?alloc_skb\w*$", r"pcpu_\w+$")


def is_skipped(frame: Frame, extra: re.Pattern[str] | None = None) -> bool:
    """The frame names crash machinery or generic code (or is unreliable): not the guilty one."""
    if frame.questionable:
        return True
    if GENERAL_SKIP.match(frame.function):
        return True
    return extra is not None and extra.match(frame.function) is not None
