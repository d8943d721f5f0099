"""Kernel crash reports read from serial console logs: a real capture and small synthetic ones.

Logs are read as bytes and decoded, so their line endings reach the parser as the guest wrote them.
"""

import pytest

from orchestrator.core.crash_report import CrashKind, parse_console, parse_console_file

pytestmark = pytest.mark.unit

NULL_DEREF_FIRST_LINE = "BUG: kernel NULL pointer dereference, address: 0000000000000008"
GPF_FIRST_LINE = (
    "general protection fault, probably for non-canonical address 0xdead000000000122: "
    "0000 [#1] PREEMPT SMP NOPTI"
)
WARNING_FIRST_LINE = (
    "WARNING: CPU: 0 PID: 388 at /build/testbed_sensor/channel.c:142 "
    "tbs_match_template+0x9d/0x140 [testbed_sensor]"
)
SOFT_LOCKUP_FIRST_LINE = "watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [tbs-scan:233]"


@pytest.fixture
def console(fixtures_dir):
    def read(name: str) -> str:
        return (fixtures_dir / "console" / name).read_bytes().decode()

    return read


# -- the real capture ---------------------------------------------------------------------------


def test_real_sysrq_crash(console):
    report = parse_console(console("sysrq-crash-6.1.0-56.log"))
    assert report is not None
    assert report.kind is CrashKind.PANIC
    assert report.title == "Kernel panic - not syncing: sysrq triggered crash in sysrq_handle_crash"
    assert report.first_line == "Kernel panic - not syncing: sysrq triggered crash"
    assert report.function == "sysrq_handle_crash"
    assert report.module is None
    assert report.panic_reason == "sysrq triggered crash"
    assert report.tainted is None  # "Not tainted"
    assert report.modules_linked == ()
    assert report.excerpt[0].endswith("Kernel panic - not syncing: sysrq triggered crash")
    assert [line for line in report.excerpt if line][-1].endswith("</TASK>")  # the log ends there
    assert all("\r" not in line for line in report.excerpt)


def test_real_sysrq_crash_as_dict(console):
    data = parse_console(console("sysrq-crash-6.1.0-56.log")).as_dict()
    assert data["kind"] == "panic"
    assert data["title"] == "Kernel panic - not syncing: sysrq triggered crash in sysrq_handle_crash"
    assert data["module"] is None
    assert data["modules_linked"] == []
    assert "sysrq_handle_crash+0x16/0x20" in data["excerpt"]


# -- synthetic logs in real kernel format ---------------------------------------------------------


TAINT = "G           OE"  # as printed: flags padded with spaces


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "synthetic-null-deref-module-oops.log",
            ("tbs_parse_channel", "testbed_sensor", TAINT, "Fatal exception"),
        ),
        ("synthetic-warning-no-panic.log", ("tbs_match_template", "testbed_sensor", TAINT, None)),
        (
            "synthetic-crlf-soft-lockup.log",
            ("tbs_spin_on_template", "testbed_sensor", TAINT, "softlockup: hung tasks"),
        ),
    ],
    ids=["null-deref", "warning", "crlf-soft-lockup"],
)
def test_fault_site_taint_and_panic_reason(console, name, expected):
    report = parse_console(console(name))
    assert report is not None
    assert (report.function, report.module, report.tainted, report.panic_reason) == expected


def test_fault_site_and_taint_in_the_last_boot(console):
    report = parse_console(console("synthetic-two-boots-last-crashed.log"))
    assert (report.function, report.module, report.tainted) == ("tbs_hook_unlink", "testbed_sensor", TAINT)
    assert report.panic_reason is not None
    assert report.panic_reason.startswith("Fatal exception")  # exactly that: see the xfail below


@pytest.mark.parametrize(
    ("name", "kind", "first_line", "title"),
    [
        pytest.param(
            "synthetic-null-deref-module-oops.log",
            CrashKind.NULL_DEREF,
            NULL_DEREF_FIRST_LINE,
            "BUG: kernel NULL pointer dereference in tbs_parse_channel [testbed_sensor]",
            id="null-deref",  # not "Oops: 0000 [#1]", printed a moment later in the same report
        ),
        pytest.param(
            "synthetic-warning-no-panic.log",
            CrashKind.WARNING,
            WARNING_FIRST_LINE,
            "WARNING in tbs_match_template [testbed_sensor]",
            id="warning",
        ),
        pytest.param(
            "synthetic-two-boots-last-crashed.log",
            CrashKind.GENERAL_PROTECTION,
            GPF_FIRST_LINE,
            "general protection fault in tbs_hook_unlink [testbed_sensor]",
            id="two-boots",
        ),
        pytest.param(
            "synthetic-crlf-soft-lockup.log",
            CrashKind.SOFT_LOCKUP,
            SOFT_LOCKUP_FIRST_LINE,
            "BUG: soft lockup in tbs_spin_on_template [testbed_sensor]",
            id="crlf-soft-lockup",
        ),
    ],
)
def test_kind_and_title(console, name, kind, first_line, title):
    report = parse_console(console(name))
    assert report is not None
    assert report.kind is kind
    assert report.first_line == first_line
    assert report.title == title


def test_a_warning_without_panic_is_reported_without_a_panic_reason(console):
    report = parse_console(console("synthetic-warning-no-panic.log"))
    assert report.panic_reason is None
    assert report.excerpt[0].endswith(WARNING_FIRST_LINE)
    assert report.excerpt[-1].endswith("---[ end trace 0000000000000000 ]---")  # stops at the end marker
    assert report.modules_linked[0] == "testbed_sensor(OE)"


def test_only_the_last_boot_counts(console):
    report = parse_console(console("synthetic-two-boots-last-crashed.log"))
    assert report.kind is CrashKind.GENERAL_PROTECTION
    assert report.excerpt[0].endswith(GPF_FIRST_LINE)
    assert not any("reboot: Restarting system" in line for line in report.excerpt)
    assert report.modules_linked[0] == "testbed_sensor(OE+)"


@pytest.mark.parametrize("name", ["synthetic-clean-boot.log", "synthetic-two-boots-first-crashed.log"])
def test_a_last_boot_without_a_crash_gives_none(console, name):
    assert parse_console(console(name)) is None


def test_a_guest_that_came_back_is_described_by_the_latest_boot_that_went_down(fixtures_dir):
    """A real console: the install crashed the guest, the next boot crashed it again, the third came
    up with the sensor in safe mode. The last boot shows nothing; the one before it brought it down."""
    path = fixtures_dir / "console" / "sensor-safe-mode-recovered-6.1.0-56.log"
    report = parse_console_file(path, latest_down=True)
    assert parse_console_file(path) is None  # the last boot's own report: none
    assert report is not None and report.boot == 1
    assert report.title == "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"


def test_an_earlier_boot_without_a_fatal_report_is_not_the_one_that_went_down(tmp_path, console):
    path = tmp_path / "console.log"
    path.write_text(console("synthetic-clean-boot.log") * 2)
    assert parse_console_file(path, latest_down=True) is None


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n", "testbed-guest login: "])
def test_nothing_to_read_gives_none(text):
    assert parse_console(text) is None


def test_crlf_reads_the_same_as_lf(console):
    crlf = console("synthetic-crlf-soft-lockup.log")
    assert "\r\n" in crlf
    from_crlf = parse_console(crlf)
    assert from_crlf == parse_console(crlf.replace("\r\n", "\n"))
    assert from_crlf.panic_reason == "softlockup: hung tasks"
    assert all("\r" not in value for value in (from_crlf.title, from_crlf.first_line, *from_crlf.excerpt))


def test_excerpt_is_capped(console):
    report = parse_console(console("synthetic-null-deref-module-oops.log"), max_excerpt_lines=5)
    assert len(report.excerpt) == 5
    assert report.excerpt[0].endswith(NULL_DEREF_FIRST_LINE)
    assert report.excerpt[0].startswith("testbed-guest login: ")  # lines are kept as the console had them


# -- bugs -----------------------------------------------------------------------------------------


def test_panic_reason_ignores_the_end_of_panic_marker(console):
    report = parse_console(console("synthetic-two-boots-last-crashed.log"))
    assert report.panic_reason == "Fatal exception"


def test_a_hung_task_names_the_function_that_blocked(console):
    report = parse_console(console("synthetic-hung-task-module.log"))
    assert report.kind is CrashKind.HUNG_TASK
    assert (report.function, report.module) == ("tbs_wait_channel", "testbed_sensor")
