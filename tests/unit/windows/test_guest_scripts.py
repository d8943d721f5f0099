"""The PowerShell the channel sends, and the parsing of what the guest prints back."""

import base64
import json
from datetime import UTC, datetime

import pytest

from orchestrator.guests.windows.guest_scripts import (
    READINESS_SCRIPT,
    GuestOutputError,
    health_script,
    parse_boot_facts,
    parse_file_content,
    parse_health_facts,
    ps_quote,
    read_file_script,
)

pytestmark = pytest.mark.unit

SINCE = datetime(2026, 11, 25, 17, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("csagent", "'csagent'"),
        ("it's", "'it''s'"),
        ("$env:x; rm -r C:\\", "'$env:x; rm -r C:\\'"),
        ("", "''"),
    ],
)
def test_values_become_single_quoted_literals(value, literal):
    assert ps_quote(value) == literal


def test_the_health_script_asks_for_the_crash_events_since_the_run_began():
    script = health_script("CSAgent", SINCE)
    assert "$serviceName = 'CSAgent'" in script
    assert "Id = @(1001,41,6008)" in script
    assert "ParseExact('2026-11-25T17:15:00', 'yyyy-MM-ddTHH:mm:ss', $null), 'Utc')" in script
    assert "-Path 'C:\\Windows\\Minidump'" in script
    assert "@@" not in script


def test_the_health_script_without_a_service():
    assert "$serviceName = $null" in health_script(None, SINCE)


@pytest.mark.parametrize("service", ["CS Agent", "x';Remove-Item C:\\ -Recurse;'", ""])
def test_a_service_name_windows_would_not_have_is_refused(service):
    with pytest.raises(ValueError, match="not a Windows service name"):
        health_script(service, SINCE)


def test_readiness_script_prints_the_boot_facts():
    assert "LastBootUpTime" in READINESS_SCRIPT
    assert "PrefetchParameters" in READINESS_SCRIPT
    assert "ConvertTo-Json" in READINESS_SCRIPT


@pytest.mark.parametrize(
    ("printed", "mark"),
    [
        (
            '{"last_boot_up_time":"2026-11-25T17:20:03Z","boot_id":57,"build":"26100","caption":"W11"}',
            "boot-id 57",
        ),
        (
            '{"last_boot_up_time":"2026-11-25T17:20:03Z","boot_id":null,"build":"26100","caption":"W11"}',
            "up since 2026-11-25T17:20:03Z",
        ),
    ],
)
def test_the_boot_mark(printed, mark):
    facts = parse_boot_facts(printed + "\r\n")
    assert facts.boot_mark == mark
    assert facts.build == "26100"


@pytest.mark.parametrize(
    "printed", ["", "WARNING: x", "[1, 2]", '{"boot_id": 1}', '{"last_boot_up_time": ""}']
)
def test_unusable_boot_facts(printed):
    with pytest.raises(GuestOutputError):
        parse_boot_facts(printed)


def health_output(fixtures_dir, **changes) -> str:
    document = {
        "service": {"name": "CSAgent", "status": "Running", "start_type": "Automatic"},
        "events_xml": (fixtures_dir / "windows" / "events" / "power-loss-41-and-6008.xml").read_text(),
        "minidumps": [
            {"name": "112526-7031-01.dmp", "size": 262144, "written": "2026-11-25T17:08:20Z"},
            {"name": "112526-7500-01.dmp", "size": 524288, "written": "2026-11-25T18:01:00Z"},
        ],
    }
    document.update(changes)
    return json.dumps(document)


def test_health_facts(fixtures_dir):
    facts = parse_health_facts(health_output(fixtures_dir))
    assert facts.service is not None
    assert facts.service.running
    assert [event.event_id for event in facts.events] == [41, 6008]
    assert [dump.name for dump in facts.minidumps] == ["112526-7031-01.dmp", "112526-7500-01.dmp"]
    assert facts.minidumps[-1].path == r"C:\Windows\Minidump\112526-7500-01.dmp"


def test_health_facts_of_a_guest_without_the_service_or_dumps(fixtures_dir):
    facts = parse_health_facts(
        health_output(fixtures_dir, service=None, minidumps=[], events_xml="<Events></Events>")
    )
    assert (facts.service, facts.events, facts.minidumps) == (None, (), ())


def test_powershell_51_renders_a_single_dump_as_an_object(fixtures_dir):
    one = {"name": "112526-7031-01.dmp", "size": 262144, "written": "2026-11-25T17:08:20Z"}
    facts = parse_health_facts(health_output(fixtures_dir, minidumps=one))
    assert [dump.name for dump in facts.minidumps] == ["112526-7031-01.dmp"]


def test_dump_names_that_are_not_file_names_are_dropped(fixtures_dir):
    dumps = [
        {"name": "..\\..\\boot.ini", "size": 1},
        {"name": "ok.dmp", "size": True},
        {"name": "x.dmp", "size": 5},
    ]
    facts = parse_health_facts(health_output(fixtures_dir, minidumps=dumps))
    assert [dump.name for dump in facts.minidumps] == ["x.dmp"]


def test_health_output_that_is_not_event_xml(fixtures_dir):
    with pytest.raises(GuestOutputError, match="not well-formed"):
        parse_health_facts(health_output(fixtures_dir, events_xml="<Events>"))


def test_file_content_round_trip():
    data = bytes(range(256)) * 3
    printed = json.dumps({"size": len(data), "base64": base64.b64encode(data).decode()})
    assert parse_file_content(printed) == data
    assert "ReadAllBytes" in read_file_script(r"C:\Windows\Minidump\a.dmp", 1024)
    assert "-LiteralPath 'C:\\Windows\\Minidump\\a.dmp'" in read_file_script(
        r"C:\Windows\Minidump\a.dmp", 1024
    )


@pytest.mark.parametrize(
    "printed",
    [
        json.dumps({"size": 3, "base64": base64.b64encode(b"ab").decode()}),  # short
        json.dumps({"size": 2, "base64": "!!"}),
        json.dumps({"size": 2}),
    ],
)
def test_file_content_that_does_not_add_up(printed):
    with pytest.raises((GuestOutputError, ValueError)):
        parse_file_content(printed)
