"""The Windows channel's decisions with a scripted executor: readiness, health, dumps, installs."""

import base64
import ipaddress
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import CanceledError, InfrastructureError
from orchestrator.guests.windows.channel import (
    GuestEndpoint,
    GuestNotReadyError,
    StepOutcome,
    WindowsChannel,
    WindowsChannelConfig,
)
from orchestrator.guests.windows.guest_scripts import READINESS_SCRIPT, REBOOT_SCRIPT
from orchestrator.guests.windows.winrm_executor import (
    CommandResult,
    WinRMAuthenticationError,
    WinRMTarget,
    WinRMUnreachableError,
)
from tests.unit.windows.test_minidump import HAL, NT, SENSOR, build_dump

pytestmark = pytest.mark.unit

RUN_STARTED = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
DUMP = build_dump(0x50, (0xFFFF840500000000, 0, SENSOR.base + 0x35A1E, 2), [NT, HAL, SENSOR], [])
EVENTS = (
    '<Events><Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
    '<Provider Name="Microsoft-Windows-Kernel-Power"/><EventID>41</EventID>'
    '<TimeCreated SystemTime="2026-11-25T17:08:01.0Z"/></System><EventData>'
    '<Data Name="BugcheckCode">80</Data></EventData></Event></Events>'
)


def boot(boot_id: int) -> CommandResult:
    facts = {
        "last_boot_up_time": "2026-11-25T17:07:55Z",
        "boot_id": boot_id,
        "build": "26100",
        "caption": "W11",
    }
    return CommandResult(0, json.dumps(facts), "")


def health(service: dict | None = None, dumps: list | None = None, events: str = EVENTS) -> CommandResult:
    document = {"service": service, "events_xml": events, "minidumps": dumps or []}
    return CommandResult(0, json.dumps(document), "")


RUNNING = {"name": "CSAgent", "status": "Running", "start_type": "Automatic"}
ONE_DUMP = [{"name": "112526-7031-01.dmp", "size": len(DUMP), "written": "2026-11-25T17:08:20Z"}]


class ScriptedExecutor:
    """Answers each kind of script from its own queue (the last answer repeats)."""

    def __init__(self, **answers: list[CommandResult | Exception]) -> None:
        self.answers = answers
        self.scripts: list[str] = []

    def run_powershell(self, script, *, timeout_s, cancel=None):
        self.scripts.append(script)
        if script == READINESS_SCRIPT:
            kind = "boot"
        elif script == REBOOT_SCRIPT:
            kind = "reboot"
        elif "ReadAllBytes" in script:
            kind = "read"
        else:
            kind = "health"
        queue = self.answers[kind]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def channel(
    executor: ScriptedExecutor, tmp_path: Path, addresses=("192.168.123.7",), **config
) -> WindowsChannel:
    settings = {
        "network": ipaddress.IPv4Network("192.168.123.0/24"),
        "run_started": RUN_STARTED,
        "evidence_dir": tmp_path / "evidence",
        "sensor_service": "CSAgent",
        "ready_attempt_interval_s": 0.0,
    }
    settings.update(config)
    return WindowsChannel(
        config=WindowsChannelConfig(**settings),
        addresses=lambda: list(addresses),
        target_for=lambda address: WinRMTarget(address=address, username="testbed", password="pw"),
        executor_for=lambda target: executor,
    )


# -- readiness ------------------------------------------------------------------------------------


def test_ready_with_a_new_boot_mark(tmp_path):
    ready = channel(
        ScriptedExecutor(boot=[boot(58)]), tmp_path, addresses=("fe80::1", "10.0.2.15", "192.168.123.7")
    )
    endpoint = ready.ask_ready("boot-id 57")
    assert endpoint == GuestEndpoint("boot-id 58", "192.168.123.7", "2026-11-25T17:07:55Z", "26100")


@pytest.mark.parametrize(
    ("addresses", "answer", "why"),
    [
        ((), boot(58), "no address in 192.168.123.0/24"),
        (("10.0.2.15", "not-an-ip"), boot(58), "no address in 192.168.123.0/24"),
        (("192.168.123.7",), WinRMUnreachableError("WinRM at https://x: ConnectionError"), "ConnectionError"),
        (("192.168.123.7",), CommandResult(1, "", "Get-CimInstance : Invalid class"), "exited with 1"),
        (("192.168.123.7",), CommandResult(0, "Windows is starting", ""), "expected one JSON document"),
        (("192.168.123.7",), boot(57), "still runs the boot before the reboot"),
    ],
)
def test_not_ready(tmp_path, addresses, answer, why):
    with pytest.raises(GuestNotReadyError, match=why):
        channel(ScriptedExecutor(boot=[answer]), tmp_path, addresses=addresses).ask_ready("boot-id 57")


def test_refused_credentials_are_the_images_fault_not_a_wait(tmp_path):
    refused = ScriptedExecutor(boot=[WinRMAuthenticationError("WinRM refused user 'testbed'")])
    with pytest.raises(WinRMAuthenticationError):
        channel(refused, tmp_path).ask_ready(None)


def test_wait_ready_asks_again_until_the_guest_answers(tmp_path):
    executor = ScriptedExecutor(boot=[WinRMUnreachableError("refused"), boot(57), boot(58)])
    endpoint = channel(executor, tmp_path).wait_ready("boot-id 57", threading.Event())
    assert endpoint.boot_mark == "boot-id 58"
    assert executor.scripts.count(READINESS_SCRIPT) == 3


def test_wait_ready_stops_when_told(tmp_path):
    stop = threading.Event()
    stop.set()
    with pytest.raises(CanceledError, match=r"stopped waiting for the guest: .*refused"):
        channel(ScriptedExecutor(boot=[WinRMUnreachableError("refused")]), tmp_path).wait_ready(None, stop)


# -- health ---------------------------------------------------------------------------------------

ENDPOINT = GuestEndpoint("boot-id 58", "192.168.123.7", "2026-11-25T17:07:55Z")


def read_answer(data: bytes = DUMP) -> CommandResult:
    return CommandResult(0, json.dumps({"size": len(data), "base64": base64.b64encode(data).decode()}), "")


def test_health_after_a_crash_fetches_the_dump_and_names_the_driver(tmp_path):
    executor = ScriptedExecutor(boot=[boot(58)], health=[health(RUNNING, ONE_DUMP)], read=[read_answer()])
    probe = channel(executor, tmp_path)
    report = probe.probe_health(ENDPOINT)
    assert (report.winrm_ok, report.boot_mark, report.service_ok) == (True, "boot-id 58", True)
    assert [event.event_id for event in report.events] == [41]
    assert report.fetched_dump == tmp_path / "evidence" / "minidump-112526-7031-01.dmp"
    assert report.fetched_dump.read_bytes() == DUMP
    assert report.crash is not None
    assert report.crash.title == "0x50 PAGE_FAULT_IN_NONPAGED_AREA in csagent.sys"
    assert report.crash.confirmed_by == ("event_41",)
    probe.probe_health(ENDPOINT)
    assert sum("ReadAllBytes" in script for script in executor.scripts) == 1  # fetched once


def test_health_of_a_quiet_guest(tmp_path):
    report = channel(
        ScriptedExecutor(boot=[boot(58)], health=[health(RUNNING, events="<Events></Events>")]), tmp_path
    )
    result = report.probe_health(ENDPOINT)
    assert (result.crash, result.minidumps, result.fetched_dump, result.detail) == (None, (), None, "")
    assert result.service_ok


def test_a_missing_sensor_service_is_a_fact(tmp_path):
    report = channel(ScriptedExecutor(boot=[boot(58)], health=[health(None)]), tmp_path).probe_health(
        ENDPOINT
    )
    assert report.service is None
    assert not report.service_ok


def test_a_stopped_service_is_not_ok(tmp_path):
    stopped = {"name": "CSAgent", "status": "Stopped", "start_type": "Automatic"}
    report = channel(ScriptedExecutor(boot=[boot(58)], health=[health(stopped)]), tmp_path).probe_health(
        ENDPOINT
    )
    assert not report.service_ok


def test_no_service_asked_for_is_ok(tmp_path):
    report = channel(ScriptedExecutor(boot=[boot(58)], health=[health(None)]), tmp_path, sensor_service=None)
    assert report.probe_health(ENDPOINT).service_ok


def test_a_silent_guest_is_a_fact_not_an_exception(tmp_path):
    silent = ScriptedExecutor(
        boot=[WinRMUnreachableError("WinRM at https://192.168.123.7:5986/wsman: timed out")]
    )
    report = channel(silent, tmp_path).probe_health(ENDPOINT)
    assert not report.winrm_ok
    assert "timed out" in report.detail


def test_a_dump_too_large_stays_in_the_guest(tmp_path):
    big = [{"name": "112526-7031-01.dmp", "size": 64 * 2**20, "written": "2026-11-25T17:08:20Z"}]
    executor = ScriptedExecutor(boot=[boot(58)], health=[health(RUNNING, big)])
    report = channel(executor, tmp_path).probe_health(ENDPOINT)
    assert report.fetched_dump is None
    assert "left in the guest" in report.detail
    assert report.crash is not None
    assert report.crash.title == "0x50 PAGE_FAULT_IN_NONPAGED_AREA"  # the event log still tells


def test_a_dump_that_is_no_kernel_dump_is_kept_and_said(tmp_path):
    executor = ScriptedExecutor(
        boot=[boot(58)], health=[health(RUNNING, ONE_DUMP)], read=[read_answer(b"MDMP" * 10)]
    )
    report = channel(executor, tmp_path).probe_health(ENDPOINT)
    assert report.fetched_dump is not None
    assert "PAGEDU64" in report.detail


def test_a_failed_health_query_is_reported(tmp_path):
    executor = ScriptedExecutor(boot=[boot(58)], health=[CommandResult(1, "", "Access is denied")])
    report = channel(executor, tmp_path).probe_health(ENDPOINT)
    assert report.winrm_ok
    assert "the health query exited with 1: Access is denied" in report.detail


# -- installs and reboots -------------------------------------------------------------------------


def test_a_step_runs_with_the_cells_inventory(tmp_path):
    seen = {}

    def runner(playbook, inventory, extravars, cancel):
        seen.update(playbook=playbook, inventory=inventory, extravars=extravars)
        return StepOutcome(ok=True, blame="")

    windows = channel(ScriptedExecutor(boot=[boot(58)]), tmp_path)
    windows.step_runner = runner
    outcome = windows.run_step(
        ENDPOINT, Path("playbooks/windows/install_candidate.yml"), {"a": 1}, threading.Event()
    )
    assert outcome.ok
    host = seen["inventory"]["all"]["hosts"]["guest"]
    assert (host["ansible_host"], host["ansible_connection"]) == ("192.168.123.7", "winrm")
    assert seen["extravars"] == {"a": 1}


def test_no_runner_is_the_testbeds_trouble(tmp_path):
    with pytest.raises(InfrastructureError, match="without a playbook runner"):
        channel(ScriptedExecutor(boot=[boot(58)]), tmp_path).run_step(
            ENDPOINT, Path("x.yml"), {}, threading.Event()
        )


def test_reboot(tmp_path):
    executor = ScriptedExecutor(reboot=[CommandResult(0, "", "")])
    channel(executor, tmp_path).reboot(ENDPOINT)
    assert executor.scripts == [REBOOT_SCRIPT]


@pytest.mark.parametrize(
    "answer",
    [CommandResult(1190, "", "A system shutdown has already been scheduled."), WinRMUnreachableError("x")],
)
def test_a_refused_reboot_is_the_testbeds_trouble(tmp_path, answer):
    with pytest.raises(InfrastructureError):
        channel(ScriptedExecutor(reboot=[answer]), tmp_path).reboot(ENDPOINT)
