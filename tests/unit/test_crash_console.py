"""The whole console: no false positives, boots, bounded reading of files, untrusted text."""

import json
import re
from pathlib import Path

import pytest

from orchestrator.core.crash.lines import MAX_LINE_CHARS, KeywordFinder
from orchestrator.core.crash.scanner import KEYWORDS
from orchestrator.core.crash.starts import match_start, may_start
from orchestrator.core.crash_report import (
    CrashKind,
    find_reports,
    find_reports_in_file,
    parse_console,
    parse_console_file,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "tests" / "fixtures" / "console"
FAULT_CAPTURES = ROOT / "samples" / "linux-faults" / "captured"
BANNER = (
    "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14)"
    " 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
)
WARNING_REPORT = """\
[   75.881630] ------------[ cut here ]------------
[   75.882318] WARNING: CPU: 0 PID: 388 at /build/tbs/channel.c:142 tbs_reload+0x9d/0x140 [testbed_sensor]
[   75.884500] RIP: 0010:tbs_reload+0x9d/0x140 [testbed_sensor]
[   75.887700] Call Trace:
[   75.887990]  tbs_reload_write+0x40/0x60 [testbed_sensor]
[   75.888170]  vfs_write+0xc7/0x3f0
[   75.890050] ---[ end trace 0000000000000000 ]---
"""
OOPS_REPORT = """\
[   97.412305] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   97.414240] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   97.416400] RIP: 0010:tbs_parse_channel+0x5a/0x180 [testbed_sensor]
[   97.419800] Call Trace:
[   97.420210]  tbs_reload_work+0x3c/0x90 [testbed_sensor]
[   97.422600] ---[ end trace 0000000000000000 ]---
[   97.425100] Kernel panic - not syncing: Fatal exception
"""
WARNING_TITLE = "WARNING in tbs_reload [testbed_sensor]"
OOPS_TITLE = "BUG: kernel NULL pointer dereference in tbs_parse_channel [testbed_sensor]"


# -- no false positives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        CONSOLE / "synthetic-clean-boot.log",
        CONSOLE / "sensor-good-content-boots-6.1.0-56.log",
        CONSOLE / "formats" / "clean-chatter.log",
        FAULT_CAPTURES / "none-6.1.0-56.log",  # real: the fault sample doing nothing
        FAULT_CAPTURES / "sysctl-off-6.1.0-56.log",  # real: it turns the panic sysctls off, no report
    ],
    ids=lambda path: path.name,
)
def test_clean_consoles_give_no_report(path):
    text = path.read_bytes().decode(errors="replace")
    assert find_reports(text) == []
    assert parse_console(text) is None


@pytest.mark.parametrize(
    "line",
    [
        "[   31.002300] testbed_sensor: self-test: BUG count 0",
        "[   31.002400] testbed_sensor: BUG: none found",  # a driver's own "BUG:" does not start a line
        "harness: WARNING: step 4 took 1200 ms, longer than expected",
        "harness: WARNING: CPU: 0 is busy",
        "harness: INFO: task 3 of 12 passed",
        "[   33.773120] traps: tbs-cli[812] general protection fault ip:7f4b3c2f4350 sp:7ffd2a0c4a68 error:0",
        "[   33.773200] traps: tbs-cli[812] trap divide error ip:55d0c4b2a2a0 sp:7ffd2a0c4a68 error:0",
        "[    1.664944] pvpanic-mmio pvpanic-mmio.0: pvpanic device found",
        "[    0.310412] NMI watchdog: Perf NMI watchdog permanently disabled",
        "---[ end Kernel panic - not syncing: Fatal exception ]---",
        "grep 'Kernel panic' /var/log/syslog",
    ],
)
def test_lines_that_only_look_like_reports_give_none(line):
    assert find_reports(line + "\n") == []


# -- boots ----------------------------------------------------------------------------------------


def test_the_same_warning_in_two_real_boots_has_one_title_and_two_boot_numbers():
    text = (FAULT_CAPTURES / "warn-6.1.0-56.log").read_bytes().decode(errors="replace")

    reports = find_reports(text)

    assert [(r.title, r.boot, r.fatal) for r in reports] == [
        ("WARNING in tbf_warn_from_module [testbed_faults]", 0, False),
        ("WARNING in tbf_warn_from_module [testbed_faults]", 1, False),
    ]
    assert parse_console(text).boot == 1


def test_firmware_output_before_the_first_banner_does_not_count_as_a_boot():
    text = "SeaBIOS (version 1.16.2)\nBooting from Hard Disk...\n" + BANNER + "\n" + OOPS_REPORT
    assert [r.boot for r in find_reports(text)] == [0]


def test_kernel_output_before_the_first_banner_is_a_boot_of_its_own():
    text = WARNING_REPORT + BANNER + "\n" + OOPS_REPORT
    assert [(r.title, r.boot) for r in find_reports(text)] == [(WARNING_TITLE, 0), (OOPS_TITLE, 1)]
    assert parse_console(text).title == OOPS_TITLE
    assert parse_console(WARNING_REPORT + BANNER + "\n") is None  # the last boot shows nothing


def test_proc_version_printed_by_user_space_is_no_new_boot():
    proc_version = BANNER.split("] ", 1)[1]  # the same text, without the kernel's timestamp

    report = parse_console(BANNER + "\n" + OOPS_REPORT + "$ cat /proc/version\n" + proc_version + "\n")

    assert (report.title, report.boot) == (OOPS_TITLE, 0)


def test_a_boot_without_panic_is_titled_by_its_last_report():
    text = BANNER + "\n" + WARNING_REPORT + WARNING_REPORT.replace("tbs_reload", "tbs_rescan")

    report = parse_console(text)

    assert report.title == "WARNING in tbs_rescan [testbed_sensor]"
    assert report.others == (WARNING_TITLE,)
    assert report.panic_reason is None
    assert not report.fatal


def test_a_warning_that_panics_is_fatal():
    panic = "[   75.884000] Kernel panic - not syncing: kernel: panic_on_warn set ...\n"
    text = WARNING_REPORT.replace("[   75.884500] RIP:", panic + "[   75.884500] RIP:")

    report = parse_console(text)

    assert (report.kind, report.title, report.fatal) == (CrashKind.WARNING, WARNING_TITLE, True)
    assert report.panic_reason == "kernel: panic_on_warn set ..."


# -- files: bounded, tail read, boots still counted ------------------------------------------------


def test_files_read_like_text(tmp_path):
    text = BANNER + "\n" + WARNING_REPORT + BANNER + "\n" + OOPS_REPORT
    log = tmp_path / "console.log"
    log.write_bytes(text.replace("\n", "\r\n").encode())

    assert find_reports_in_file(log) == find_reports(text)
    assert parse_console_file(log) == parse_console(text)


def test_only_the_tail_of_a_flooded_console_is_read_and_boots_before_it_still_count(tmp_path):
    flood = "".join(f"[   {60 + i / 1000:.6f}] tbs-scan: flooding the console {i}\n" for i in range(20_000))
    text = BANNER + "\n" + WARNING_REPORT + BANNER + "\n" + flood + OOPS_REPORT
    log = tmp_path / "console.log"
    log.write_text(text)
    tail = len(OOPS_REPORT.encode()) + 2000  # starts in the middle of a flood line

    reports = find_reports_in_file(log, max_bytes=tail)

    assert [(r.title, r.boot) for r in reports] == [(OOPS_TITLE, 1)]  # the WARNING is in the part not read
    assert parse_console_file(log, max_bytes=tail).boot == 1


def test_undecodable_bytes_do_not_stop_the_parser(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(b"\xff\xfe garbage \x80\x81\n" + OOPS_REPORT.encode() + b"\xc3")

    assert parse_console_file(log).title == OOPS_TITLE


def test_a_huge_line_without_newline_is_read_up_to_the_line_cap(tmp_path):
    text = OOPS_REPORT + "x" * (3 * 1024 * 1024) + "BUG: kernel NULL pointer dereference"
    log = tmp_path / "console.log"
    log.write_text(text)

    reports = find_reports_in_file(log)

    assert [r.title for r in reports] == [OOPS_TITLE]  # the report far beyond the cap is not read
    assert all(len(line) <= MAX_LINE_CHARS for r in reports for line in r.excerpt)


def test_a_flood_of_warnings_keeps_a_bounded_number_and_the_oops_that_ends_it():
    text = WARNING_REPORT * 600 + OOPS_REPORT.replace("[   97.", "[   75.9")

    reports = find_reports(text)

    assert len(reports) <= 501
    assert reports[-1].title == OOPS_TITLE
    assert parse_console(text).title == OOPS_TITLE


# -- untrusted text ---------------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


def test_escape_sequences_and_control_characters_never_reach_titles_excerpts_or_json():
    hostile = OOPS_REPORT.replace(
        "BUG: kernel NULL pointer", "\x1b[2J\x1b]0;pwned\x07BUG: kernel NULL\x00 pointer"
    ).replace("tbs_reload_work+0x3c/0x90", "tbs_reload_work+0x3c/0x90\x1b[31m\x9b\u202e\ud800")

    report = parse_console(hostile)

    assert report.title == OOPS_TITLE
    for text in (report.title, report.first_line, *report.excerpt):
        assert "\x1b" not in text
        assert not _UNSAFE.search(text)
    assert json.loads(json.dumps(report.as_dict()))["title"] == OOPS_TITLE


def test_as_dict_keeps_the_old_keys_and_adds_the_new_ones():
    data = parse_console(OOPS_REPORT).as_dict()

    assert set(data) >= {
        "kind", "title", "first_line", "function", "module", "panic_reason", "tainted", "modules_linked",
        "excerpt", "fatal", "boot", "uptime_s", "corrupted", "corrupted_reason", "others",
    }  # fmt: skip
    assert (data["kind"], data["fatal"], data["boot"]) == ("null_pointer_dereference", True, 0)
    assert data["corrupted"] is False
    assert data["uptime_s"] == pytest.approx(97.412305)
    assert isinstance(data["excerpt"], str)


# -- the scanner's shortcut never misses a start ------------------------------------------------------


def test_the_scanner_shortcuts_never_miss_a_line_a_rule_matches():
    lines = [
        line
        for path in sorted([*CONSOLE.rglob("*.log"), *FAULT_CAPTURES.glob("*.log")])
        for line in path.read_bytes().decode(errors="replace").splitlines()
    ]
    starts = [line for line in lines if match_start(line)]

    assert len(starts) > 100
    assert all(may_start(line) for line in starts)  # the one-regex prefilter
    assert all(KeywordFinder(line, KEYWORDS).next_line_start(0) == 0 for line in starts)  # the finder


def test_the_engine_imports_the_same_names_from_the_thin_module():
    import orchestrator.core.crash as package
    import orchestrator.core.crash_report as thin

    assert thin.__all__ == package.__all__
    assert all(getattr(thin, name) is getattr(package, name) for name in package.__all__)
