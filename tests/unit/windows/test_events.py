"""System event records (1001, 41, 6008) read from real event XML."""

from datetime import UTC, datetime

import pytest

from orchestrator.guests.windows.events import (
    EventXmlError,
    SystemEvent,
    bugcheck_from_event,
    dump_path_from_event,
    latest_bugcheck,
    parse_events,
    unexpected_shutdowns,
)
from orchestrator.guests.windows.panic import BugcheckSource

pytestmark = pytest.mark.unit


def events_fixture(fixtures_dir, name: str) -> tuple[SystemEvent, ...]:
    return parse_events((fixtures_dir / "windows" / "events" / name).read_text())


def test_kernel_power_41_reads_the_decimal_stop_code(fixtures_dir):
    (event,) = events_fixture(fixtures_dir, "kernel-power-41-0x1a-3470.xml")
    assert event.event_id == 41
    assert event.provider == "Microsoft-Windows-Kernel-Power"
    assert event.computer == "DESKTOP-G8IIL19"
    assert event.record_id == 4730
    assert event.time_created == datetime(2019, 10, 15, 1, 14, 2, 498048, tzinfo=UTC)
    bugcheck = bugcheck_from_event(event)
    assert bugcheck is not None
    assert bugcheck.code == 0x1A  # BugcheckCode 26, decimal
    assert bugcheck.parameters == (0x3470, 0xFFFFA603E09DF000, 0xA6E9FBC8A2515BB0, 0xA669FBC8A2515BB0)
    assert bugcheck.source is BugcheckSource.EVENT_41


@pytest.mark.parametrize(
    ("fixture", "code", "first_parameter"),
    [
        ("kernel-power-41-0x1a-6001.xml", 0x1A, 0x6001),
        ("kernel-power-41-0x139.xml", 0x139, 0xA),  # BugcheckCode 313
    ],
)
def test_other_kernel_power_41_records(fixtures_dir, fixture, code, first_parameter):
    (event,) = events_fixture(fixtures_dir, fixture)
    bugcheck = bugcheck_from_event(event)
    assert bugcheck is not None
    assert (bugcheck.code, bugcheck.parameters[0]) == (code, first_parameter)


@pytest.mark.parametrize(
    ("fixture", "code", "parameters", "dump"),
    [
        (
            "bugcheck-1001-0x50.xml",
            0x50,
            (0xFFFFFFFFFFFFFFE8, 0, 0xFFFFF802C8497C2F, 0),
            r"C:\Windows\MEMORY.DMP",
        ),
        (
            "bugcheck-1001-0x3b.xml",
            0x3B,
            (0xC0000005, 0xFFFFF80815A0F9C8, 0xFFFFBF0094C14E70, 0),
            r"C:\WINDOWS\MEMORY.DMP",
        ),
    ],
)
def test_bugcheck_1001_reads_param1(fixtures_dir, fixture, code, parameters, dump):
    (event,) = events_fixture(fixtures_dir, fixture)
    assert event.event_id == 1001
    assert event.time_created is None  # the quote had no time
    bugcheck = bugcheck_from_event(event)
    assert bugcheck is not None
    assert (bugcheck.code, bugcheck.parameters, bugcheck.source) == (
        code,
        parameters,
        BugcheckSource.EVENT_1001,
    )
    assert dump_path_from_event(event) == dump


def test_power_loss_is_no_bugcheck_but_an_unexpected_shutdown(fixtures_dir):
    events = events_fixture(fixtures_dir, "power-loss-41-and-6008.xml")
    assert [event.event_id for event in events] == [41, 6008]  # oldest first
    assert all(bugcheck_from_event(event) is None for event in events)
    assert latest_bugcheck(events) is None
    assert unexpected_shutdowns(events) == list(events)
    shutdown = events[1]
    assert shutdown.data["Data0"] == "10:23:28 AM"
    assert shutdown.data["Data1"] == "11/25/2025"
    assert shutdown.data["Binary"].startswith("E9070B00")


def test_1001_wins_over_41_for_the_same_crash():
    both = parse_events(
        "<Events>"
        + _event(
            41,
            "2026-11-25T17:10:05.0000000Z",
            '<Data Name="BugcheckCode">80</Data><Data Name="BugcheckParameter1">0xffffd001</Data>',
        )
        + _event(
            1001,
            "2026-11-25T17:10:40.0000000Z",
            '<Data Name="param1">0x00000050 (0xffffd001, 0x0000000000000002, 0xfffff80112345678, '
            '0x0000000000000002)</Data><Data Name="param2">C:\\Windows\\Minidump\\112526-7031-01.dmp</Data>',
        )
        + "</Events>"
    )
    found = latest_bugcheck(both)
    assert found is not None
    bugcheck, event = found
    assert (bugcheck.code, event.event_id) == (0x50, 1001)
    assert dump_path_from_event(event) == r"C:\Windows\Minidump\112526-7031-01.dmp"


def test_the_newest_crash_wins_over_an_older_one():
    events = parse_events(
        "<Events>"
        + _event(41, "2026-11-25T17:00:00.0Z", '<Data Name="BugcheckCode">247</Data>')  # 0xF7, an hour before
        + _event(41, "2026-11-25T18:00:00.0Z", '<Data Name="BugcheckCode">126</Data>')  # 0x7E
        + "</Events>"
    )
    found = latest_bugcheck(events)
    assert found is not None
    assert found[0].code == 0x7E


def _event(event_id: int, time: str, data: str) -> str:
    return (
        '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
        f'<Provider Name="p"/><EventID>{event_id}</EventID><TimeCreated SystemTime="{time}"/>'
        f"</System><EventData>{data}</EventData></Event>"
    )


@pytest.mark.parametrize("text", ["", "   ", "<Events></Events>"])
def test_no_events(text):
    assert parse_events(text) == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<Events><Event>", "not well-formed"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><Events/>', "DTD"),
        ("<Events>" + "x" * (5 * 2**20) + "</Events>", "too large"),
    ],
)
def test_refuses_what_windows_never_writes(text, message):
    with pytest.raises(EventXmlError, match=message):
        parse_events(text)


def test_events_without_system_or_id_are_skipped():
    text = (
        "<Events><Event><EventData/></Event>"
        '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><EventID>x</EventID>'
        "</System></Event></Events>"
    )
    assert parse_events(text) == ()


def test_event_as_dict_is_plain_data(fixtures_dir):
    (event,) = events_fixture(fixtures_dir, "kernel-power-41-0x139.xml")
    data = event.as_dict()
    assert data["event_id"] == 41
    assert data["time_created"] == "2026-03-01T17:52:28.073162+00:00"
    assert data["data"]["BugcheckCode"] == "313"
