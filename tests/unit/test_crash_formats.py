"""Every console format the parser reads, one hand-composed log each, with the report it must give.

The logs under tests/fixtures/console/formats/ were written for these tests in the formats of
x86-64 (2.6, 3.10, 4.x, 5.x, 6.x kernels) and arm64 (4.14, 6.1). Several formats of the same bug
must give the same title: that is what groups one bug across cells and kernels.
"""

from pathlib import Path
from typing import NamedTuple

import pytest

from orchestrator.core.crash_report import CrashKind, find_reports, parse_console

pytestmark = pytest.mark.unit

FORMATS = Path(__file__).resolve().parents[1] / "fixtures" / "console" / "formats"
SENSOR, FAULTS = "testbed_sensor", "testbed_faults"
NULL_DEREF_TITLE = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
WARNING_TITLE = "WARNING in tbs_reload [testbed_sensor]"
PAGE_FAULT_TITLE = "BUG: unable to handle page fault in tbf_fill_table [testbed_faults]"
KERNEL_BUG_TITLE = "kernel BUG in tbs_check_channel [testbed_sensor]"
LIST_DEL_TITLE = "list_del corruption in tbs_hook_unlink [testbed_sensor]"
KASAN_TITLE = "KASAN: slab-out-of-bounds Write in tbs_copy_name [testbed_sensor]"
STACK_PROTECTOR_TITLE = "stack-protector: Kernel stack is corrupted in tbs_parse_name [testbed_sensor]"


class Expected(NamedTuple):
    kind: CrashKind
    title: str
    function: str | None
    module: str | None
    fatal: bool = True


def read(name: str) -> str:
    return (FORMATS / name).read_bytes().decode()  # bytes: line endings reach the parser as written


TABLE: dict[str, Expected] = {
    # NULL pointer dereference: x86-64 3.10 ("IP: [<...>]"), arm64 6.1 ("pc :", "Internal error: Oops")
    "x86-3.10-null-deref-old-ip.log": Expected(
        CrashKind.NULL_DEREF, NULL_DEREF_TITLE, "tbs_match_template", SENSOR
    ),
    "arm64-6.1-null-deref.log": Expected(
        CrashKind.NULL_DEREF, NULL_DEREF_TITLE, "tbs_match_template", SENSOR
    ),
    # Paging request / page fault: 4.14 ("IP: func"), 6.1, arm64 4.14 ("PC is at", [<...>] frames)
    "x86-4.14-page-fault-ip-line.log": Expected(
        CrashKind.PAGE_FAULT, PAGE_FAULT_TITLE, "tbf_fill_table", FAULTS
    ),
    "x86-6.1-page-fault.log": Expected(CrashKind.PAGE_FAULT, PAGE_FAULT_TITLE, "tbf_fill_table", FAULTS),
    "arm64-4.14-page-fault-pc-is-at.log": Expected(
        CrashKind.PAGE_FAULT, PAGE_FAULT_TITLE, "tbf_fill_table", FAULTS
    ),
    # General protection fault: without timestamps (4.19); RIP in strlen, "? " frames, file:line
    # suffixes and an [inline] frame (symbolized 6.1)
    "x86-4.19-gpf-no-timestamps.log": Expected(
        CrashKind.GENERAL_PROTECTION, "general protection fault in tbs_hook_unlink [testbed_sensor]",
        "tbs_hook_unlink", SENSOR,
    ),
    "x86-6.1-gpf-symbolized-inline.log": Expected(
        CrashKind.GENERAL_PROTECTION, "general protection fault in tbs_copy_name [testbed_sensor]",
        "tbs_copy_name", SENSOR,
    ),
    # kernel BUG at: x86-64 ("invalid opcode") and arm64 ("Internal error: Oops - BUG")
    "x86-6.1-kernel-bug.log": Expected(CrashKind.KERNEL_BUG, KERNEL_BUG_TITLE, "tbs_check_channel", SENSOR),
    "arm64-6.1-kernel-bug.log": Expected(CrashKind.KERNEL_BUG, KERNEL_BUG_TITLE, "tbs_check_channel", SENSOR),
    "arm64-6.1-internal-error.log": Expected(
        CrashKind.INTERNAL_ERROR,
        "Internal error: synchronous external abort in tbs_read_reg [testbed_sensor]",
        "tbs_read_reg", SENSOR,
    ),
    # WARNING in three generations: 2.6 ("WARNING: at"), 3.10 ("...()"), 6.17 ("file:line at f, CPU#0")
    "x86-2.6-warning-at-form.log": Expected(CrashKind.WARNING, WARNING_TITLE, "tbs_reload", SENSOR, False),
    "x86-3.10-warning-old-form.log": Expected(CrashKind.WARNING, WARNING_TITLE, "tbs_reload", SENSOR, False),
    "x86-6.17-warning-new-form.log": Expected(CrashKind.WARNING, WARNING_TITLE, "tbs_reload", SENSOR, False),
    # Sanitizers
    # KASAN today (the header names memcpy, the stack the culprit) and in 4.9's form: one title
    "x86-6.1-kasan-memcpy.log": Expected(CrashKind.KASAN, KASAN_TITLE, "tbs_copy_name", SENSOR),
    "x86-4.9-kasan-old-form.log": Expected(CrashKind.KASAN, KASAN_TITLE, "tbs_copy_name", SENSOR),
    "x86-6.1-kmsan.log": Expected(
        CrashKind.KMSAN, "KMSAN: uninit-value in tbs_parse_channel [testbed_sensor]", "tbs_parse_channel",
        SENSOR
    ),
    "x86-6.1-ubsan.log": Expected(
        CrashKind.UBSAN, "UBSAN: array-index-out-of-bounds in tbs_match_template [testbed_sensor]",
        "tbs_match_template", SENSOR, False,
    ),
    # Lockdep, today's and the bracketed 3.10 form
    "x86-6.1-lockdep-circular.log": Expected(
        CrashKind.LOCKDEP, "possible deadlock in tbs_lookup [testbed_sensor]", "tbs_lookup", SENSOR, False
    ),
    "x86-3.10-lockdep-recursive-old-info.log": Expected(
        CrashKind.LOCKDEP, "possible deadlock in tbs_lock_table [testbed_sensor]", "tbs_lock_table",
        SENSOR, False
    ),
    # Lockups, stalls and the NMI the testbed injects into a silent guest (CRLF line endings)
    "x86-6.1-hard-lockup.log": Expected(
        CrashKind.HARD_LOCKUP, "watchdog: hard LOCKUP in tbf_spin_with_irqs_off [testbed_faults]",
        "tbf_spin_with_irqs_off", FAULTS,
    ),
    "x86-6.1-rcu-stall.log": Expected(
        CrashKind.RCU_STALL, "INFO: rcu detected stall in tbf_spin [testbed_faults]", "tbf_spin", FAULTS
    ),
    "x86-6.1-nmi-injected-crlf.log": Expected(
        CrashKind.NMI, "NMI: hang in tbf_spin [testbed_faults]", "tbf_spin", FAULTS
    ),
    # BUG()s the kernel names, and faults
    "x86-6.1-scheduling-while-atomic.log": Expected(
        CrashKind.SCHEDULING_WHILE_ATOMIC, "BUG: scheduling while atomic in tbs_wait_locked [testbed_sensor]",
        "tbs_wait_locked", SENSOR,
    ),
    "x86-6.1-divide-error.log": Expected(
        CrashKind.DIVIDE_ERROR, "divide error in tbs_average_score [testbed_sensor]", "tbs_average_score",
        SENSOR
    ),
    # Data checks: kmemleak (a module's own *alloc* function is named), refcount_t, list corruption
    # as a BUG (6.1, the kernel died) and as a WARNING (3.10, it ran on)
    "x86-6.1-kmemleak.log": Expected(
        CrashKind.MEMORY_LEAK, "memory leak in tbs_alloc_table [testbed_sensor]", "tbs_alloc_table",
        SENSOR, False
    ),
    "x86-6.1-refcount-underflow.log": Expected(
        CrashKind.REFCOUNT, "refcount_t: underflow; use-after-free in tbs_put_channel [testbed_sensor]",
        "tbs_put_channel", SENSOR, False,
    ),
    "x86-6.1-list-del-corruption-bug.log": Expected(
        CrashKind.LIST_CORRUPTION, LIST_DEL_TITLE, "tbs_hook_unlink", SENSOR
    ),
    "x86-3.10-list-del-corruption-warning.log": Expected(
        CrashKind.LIST_CORRUPTION, LIST_DEL_TITLE, "tbs_hook_unlink", SENSOR, False
    ),
    # Stack protector: the function named in the panic line (6.1) or only its address (3.10)
    "x86-6.1-stack-protector.log": Expected(
        CrashKind.STACK_PROTECTOR, STACK_PROTECTOR_TITLE, "tbs_parse_name", SENSOR
    ),
    "x86-3.10-stack-protector-address.log": Expected(
        CrashKind.STACK_PROTECTOR, STACK_PROTECTOR_TITLE, "tbs_parse_name", SENSOR
    ),
    # Only a panic line: its reason without numbers, and the function its stack names
    "x86-6.1-panic-only.log": Expected(
        CrashKind.PANIC,
        "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(N,N) in mount_block_root",
        "mount_block_root", None,
    ),
    # User-space output interleaved, a login prompt glued to a kernel line
    "x86-6.1-interleaved-user-space.log": Expected(
        CrashKind.NULL_DEREF, "BUG: kernel NULL pointer dereference in tbs_parse_channel [testbed_sensor]",
        "tbs_parse_channel", SENSOR,
    ),
    # A console cut inside the stack: the faulting site was printed, the title stands
    "x86-6.1-console-cut-in-stack.log": Expected(
        CrashKind.NULL_DEREF, NULL_DEREF_TITLE, "tbs_match_template", SENSOR
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_format_gives_its_report(name):
    expected = TABLE[name]

    report = parse_console(read(name))

    assert report is not None
    assert (report.kind, report.title, report.function, report.module, report.fatal) == tuple(expected)
    assert not report.corrupted, report.corrupted_reason
    assert report.first_line and report.excerpt
    assert report.first_line in report.excerpt[0]  # the raw first line stays as evidence


def test_the_table_covers_every_fixture_but_the_special_ones():
    special = {path.name for path in FORMATS.glob("*.log")} - set(TABLE)
    assert special == {
        "clean-chatter.log",
        "x86-6.1-console-cut-in-first-line.log",
        "x86-6.1-first-line-cut.log",
        "x86-6.1-interleaved-beyond-repair.log",
        "x86-6.1-messages-dropped-in-report.log",
        "x86-6.1-panic-header-lost.log",
        "x86-6.1-panic-then-kdump-kernel.log",
        "x86-6.1-two-cpus-printk-caller.log",
        "x86-6.1-warning-then-oops.log",
    }


def test_first_line_and_uptime_are_the_raw_evidence():
    report = parse_console(read("x86-3.10-null-deref-old-ip.log"))
    assert report.first_line == "BUG: unable to handle kernel NULL pointer dereference at 0000000000000010"
    assert report.uptime_s == pytest.approx(1234.567890)
    assert report.panic_reason == "Fatal exception"
    assert report.tainted == "G           OE"  # RHEL's "------------" column is not a flag
    assert report.modules_linked[0] == "testbed_sensor(OE)"


def test_reports_without_timestamps_have_no_uptime():
    report = parse_console(read("x86-4.19-gpf-no-timestamps.log"))
    assert report.uptime_s is None
    assert report.first_line == "general protection fault: 0000 [#1] SMP PTI"


# -- several reports in one log ------------------------------------------------------------------


def test_the_report_that_led_to_the_panic_is_the_one_and_the_others_are_listed():
    text = read("x86-6.1-warning-then-oops.log")

    report = parse_console(text)

    assert report.title == "BUG: kernel NULL pointer dereference in tbs_parse_channel [testbed_sensor]"
    assert report.others == ("WARNING in tbs_match_template [testbed_sensor]",)
    assert report.panic_reason == "Fatal exception"
    assert [(r.title, r.fatal) for r in find_reports(text)] == [
        ("WARNING in tbs_match_template [testbed_sensor]", False),
        (report.title, True),
    ]


def test_two_cpus_reporting_at_once_are_told_apart_by_printk_caller_ids():
    text = read("x86-6.1-two-cpus-printk-caller.log")

    reports = find_reports(text)

    assert [r.title for r in reports] == [
        NULL_DEREF_TITLE,
        "WARNING in tbf_warn_from_module [testbed_faults]",
    ]
    assert not any(r.corrupted for r in reports)
    assert reports[0].panic_reason == "Fatal exception"
    assert reports[1].panic_reason is None
    assert parse_console(text).title == NULL_DEREF_TITLE


def test_a_kdump_capture_kernel_booting_after_the_panic_does_not_hide_it():
    text = read("x86-6.1-panic-then-kdump-kernel.log")

    report = parse_console(text)

    assert report is not None
    assert (report.title, report.boot) == (NULL_DEREF_TITLE, 0)


# -- damaged reports: flagged, and titled only with what is certain -----------------------------


@pytest.mark.parametrize(
    ("name", "title", "reason"),
    [
        # The console ends in the middle of the first line: nothing but the kind is known.
        ("x86-6.1-console-cut-in-first-line.log", "BUG: kernel NULL pointer dereference", "before its stack"),
        # The first line was cut and the next kernel line glued to it: "unable to handle ker..."
        ("x86-6.1-first-line-cut.log", "BUG", "first line is cut"),
        # Without printk caller ids, a second CPU's oops started before the first printed its stack.
        ("x86-6.1-interleaved-beyond-repair.log", "BUG: kernel NULL pointer dereference", "before its stack"),
        ("x86-6.1-messages-dropped-in-report.log", "BUG: kernel NULL pointer dereference", "dropped"),
        ("x86-6.1-panic-header-lost.log", "Kernel panic - not syncing: Fatal exception", "missing"),
    ],
)
def test_corrupted_reports_are_flagged_not_mistitled(name, title, reason):
    report = parse_console(read(name))

    assert report is not None
    assert report.corrupted
    assert reason in report.corrupted_reason
    assert report.title == title
    assert report.fatal


def test_two_interleaved_dumps_without_caller_ids_flag_the_second_report_too():
    reports = find_reports(read("x86-6.1-interleaved-beyond-repair.log"))

    assert [(r.kind, r.corrupted) for r in reports] == [
        (CrashKind.NULL_DEREF, True),
        (CrashKind.GENERAL_PROTECTION, True),
    ]
    assert reports[1].title == "general protection fault"  # two RIP lines: which one is its own is unknown
    assert "interleaved" in reports[1].corrupted_reason
    assert (reports[1].function, reports[1].module) == (None, None)  # not even a best guess


def test_a_cut_first_line_keeps_the_best_guess_of_the_function_out_of_the_title():
    report = parse_console(read("x86-6.1-first-line-cut.log"))
    assert report.first_line == "BUG: unable to handle ker"
    assert (report.function, report.module) == ("tbs_match_template", "testbed_sensor")
