"""One crash report from the hypervisor's and the guest's evidence, shaped like the Linux one."""

import dataclasses
import json

import pytest

from orchestrator.core.crash_report import CrashReport
from orchestrator.guests.windows.crash import WindowsCrashKind, WindowsCrashReport, windows_crash_report
from orchestrator.guests.windows.events import parse_events
from orchestrator.guests.windows.minidump import parse_minidump
from tests.unit.windows.test_minidump import FILTER, HAL, NT, SENSOR, build_dump

pytestmark = pytest.mark.unit

PAGE_FAULT_LOG = (
    "2026-11-25 17:06:00.000+0000: panic hyper-v: arg1='0x50', arg2='0xffff840500000000', "
    f"arg3='0x0', arg4='0x{SENSOR.base + 0x35A1E:x}', arg5='0x2'\n"
)


def events_after_reboot(code_decimal: int, param1: str) -> str:
    namespace = "http://schemas.microsoft.com/win/2004/08/events/event"
    return (
        f'<Events><Event xmlns="{namespace}"><System><Provider Name="Microsoft-Windows-Kernel-Power"/>'
        '<EventID>41</EventID><TimeCreated SystemTime="2026-11-25T17:08:01.0Z"/></System><EventData>'
        f'<Data Name="BugcheckCode">{code_decimal}</Data></EventData></Event>'
        f'<Event xmlns="{namespace}"><System><Provider Name="Microsoft-Windows-WER-SystemErrorReporting"/>'
        '<EventID Qualifiers="16384">1001</EventID>'
        '<TimeCreated SystemTime="2026-11-25T17:08:40.0Z"/></System>'
        f'<EventData><Data Name="param1">{param1}</Data>'
        r'<Data Name="param2">C:\Windows\Minidump\112526-7031-01.dmp</Data></EventData></Event></Events>'
    )


def test_the_2024_outage_reads_as_its_stop_code_in_the_sensor():
    fault = SENSOR.base + 0x35A1E
    dump = parse_minidump(build_dump(0x50, (0xFFFF840500000000, 0, fault, 2), [NT, HAL, SENSOR], []))
    events = parse_events(events_after_reboot(80, f"0x00000050 (0xffff840500000000, 0x0, 0x{fault:x}, 0x2)"))
    report = windows_crash_report(None, PAGE_FAULT_LOG, events, dump=dump)
    assert report is not None
    assert report.title == "0x50 PAGE_FAULT_IN_NONPAGED_AREA in csagent.sys"
    assert (report.kind, report.module, report.function, report.fatal) == (
        WindowsCrashKind.BUGCHECK,
        "csagent.sys",
        None,
        True,
    )
    assert report.source == "domain_log"
    assert report.confirmed_by == ("minidump", "event_1001")
    assert report.module_basis == "parameter 3"
    assert report.dump == r"C:\Windows\Minidump\112526-7031-01.dmp"


def test_the_hypervisor_alone_gives_the_title(fixtures_dir):
    payload = json.loads(
        (fixtures_dir / "windows" / "panic" / "guest-panicked-hotplug-0x3e.json").read_text()
    )
    report = windows_crash_report(payload, "", ())
    assert report is not None
    assert report.title == "0x3E MULTIPROCESSOR_CONFIGURATION_NOT_SUPPORTED"
    assert report.source == "guest_panicked_event"
    assert report.module is None


def test_the_panic_event_outranks_the_log():
    payload = {
        "action": "pause",
        "info": {"type": "hyper-v", "arg1": 0xF7, "arg2": 1, "arg3": 2, "arg4": 3, "arg5": 0},
    }
    report = windows_crash_report(payload, "x: panic hyper-v: arg1='0xf7', arg2='0x1'\n", ())
    assert report is not None
    assert (report.stop_code, report.source, report.confirmed_by) == (
        0xF7,
        "guest_panicked_event",
        ("domain_log",),
    )


def test_a_dump_of_another_crash_names_no_driver():
    old_dump = parse_minidump(build_dump(0xF7, (1, 2, 3, 0), [NT, FILTER], [FILTER.base + 1]))
    report = windows_crash_report(None, PAGE_FAULT_LOG, (), dump=old_dump)
    assert report is not None
    assert report.title == "0x50 PAGE_FAULT_IN_NONPAGED_AREA"
    assert report.module is None
    assert report.confirmed_by == ()


def test_after_the_reboot_the_event_log_alone_tells(fixtures_dir):
    events = parse_events((fixtures_dir / "windows" / "events" / "kernel-power-41-0x139.xml").read_text())
    report = windows_crash_report(None, "", events)
    assert report is not None
    assert report.title == "0x139 KERNEL_SECURITY_CHECK_FAILURE"
    assert report.source == "event_41"
    assert [event.event_id for event in report.events] == [41]


def test_an_unexpected_shutdown_without_stop_code(fixtures_dir):
    events = parse_events((fixtures_dir / "windows" / "events" / "power-loss-41-and-6008.xml").read_text())
    report = windows_crash_report({"action": "pause"}, "", events)
    assert report is not None
    assert report.kind is WindowsCrashKind.UNEXPECTED_SHUTDOWN
    assert report.title == "unexpected shutdown without a stop code (System event 41, 6008)"
    assert report.stop_code is None


def test_nothing_crashed():
    assert windows_crash_report(None, "2026-11-25 17:00:00.000+0000: starting up\n", ()) is None


def test_same_shape_as_the_linux_report():
    report = windows_crash_report(None, PAGE_FAULT_LOG, ())
    assert report is not None
    shared = {"kind", "title", "function", "module"}
    linux_fields = {item.name for item in dataclasses.fields(CrashReport)}
    windows_fields = {item.name for item in dataclasses.fields(WindowsCrashReport)}
    assert shared <= linux_fields
    assert shared | {"fatal"} <= windows_fields
    data = report.as_dict()
    assert shared | {"fatal"} <= set(data)
    assert json.loads(json.dumps(data)) == data  # plain data, as crash.json needs
    assert data["stop_code"] == "0x50"
    assert data["parameters"] == ["0xffff840500000000", "0x0", f"0x{SENSOR.base + 0x35A1E:x}", "0x2"]
