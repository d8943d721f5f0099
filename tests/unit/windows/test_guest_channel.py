"""The Windows channel in the engine's terms: readiness, probe reports the probe rules judge as they
judge Linux ones (with no panic sysctls required), install steps, reboots."""

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.core.outcomes import Blame, CellOutcome
from orchestrator.core.plan import InstallStep
from orchestrator.core.probe_rules import REQUIRED_SYSCTLS, ProbeReport, Verdict, judge_probe
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.guests.channel import GuestEndpoint, NotReadyError, PlansSteps
from orchestrator.guests.windows.channel import StepOutcome
from orchestrator.guests.windows.guest_channel import (
    SYSTEM_EVENTS_FILE,
    WindowsGuestChannel,
    installer_arguments,
)
from orchestrator.guests.windows.guest_scripts import REBOOT_SCRIPT
from orchestrator.guests.windows.playbook_vars import StagedArtifact
from orchestrator.guests.windows.winrm_executor import CommandResult, WinRMUnreachableError
from tests.unit.windows.cells import (
    CHANNEL,
    MSI,
    AgentHost,
    run_context,
    sha256,
    windows_plan,
    windows_record,
    write_candidate,
)
from tests.unit.windows.test_channel import EVENTS, RUNNING, ScriptedExecutor, boot, health

pytestmark = pytest.mark.unit

STARTED = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
NO_EVENTS = "<Events/>"
READY = GuestEndpoint(boot_mark="boot-id 58", address="192.168.123.7")


class Steps:
    """A playbook runner that remembers what it was asked and answers as told."""

    def __init__(self, outcome: StepOutcome) -> None:
        self.outcome = outcome
        self.runs: list[tuple[Path, dict, dict]] = []

    def __call__(self, playbook, inventory, extravars, cancel):
        self.runs.append((playbook, inventory, extravars))
        return self.outcome


def make_channel(tmp_path, executor, *, host=None, steps=None, service="CSAgent", package="sensor.msi"):
    record = windows_record(tmp_path / "images")
    context = run_context(tmp_path, record, write_candidate(tmp_path / "candidate", package=package))
    plan = windows_plan(record)
    channel = WindowsGuestChannel(
        plan,
        "tb-win",
        host or AgentHost(),
        context,
        credentials=("testbed", "pw"),
        started=STARTED,
        sensor_service=service,
        step_runner=steps,
        executor_for=lambda target: executor,
    )
    return channel, context


def judged(report: ProbeReport, *, baseline: bool = False):
    return judge_probe(
        report, expected_mark="boot-id 58", baseline=baseline, known_titles=frozenset(), baseline_taint=None
    )


# -- readiness -------------------------------------------------------------------------------------


def test_ready_gives_the_engine_an_endpoint(tmp_path):
    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[boot(58)]))
    assert channel.ask_ready("boot-id 57") == READY


def test_not_ready_is_the_engines_not_ready(tmp_path):
    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[WinRMUnreachableError("refused")]))
    with pytest.raises(NotReadyError, match="refused"):
        channel.ask_ready(None)
    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[boot(57)]))
    with pytest.raises(NotReadyError, match="still runs the boot before the reboot"):
        channel.ask_ready("boot-id 57")


# -- probes ----------------------------------------------------------------------------------------


def test_a_healthy_guest_probes_healthy_without_panic_sysctls(tmp_path):
    executor = ScriptedExecutor(boot=[boot(58)], health=[health(RUNNING, events=NO_EVENTS)])
    channel, context = make_channel(tmp_path, executor)
    report = channel.probe(READY, health_check=True)
    assert (report.agent_ok, report.ssh_ok, report.boot_mark) == (True, True, "boot-id 58")
    assert (report.health_rc, report.health_output) == (
        0,
        "service CSAgent is Running (start type Automatic)",
    )
    assert report.required_sysctls == {} and report.sysctls == {}
    assert json.loads(json.dumps(report.__dict__, default=str))["required_sysctls"] == {}  # probes.jsonl
    assert judged(report).verdict is Verdict.HEALTHY
    recorded = context.cell_dir("win11-24h2") / SYSTEM_EVENTS_FILE
    assert json.loads(recorded.read_text()) == []


def test_the_probe_rules_still_require_linux_sysctls_by_default():
    linux = ProbeReport(agent_ok=True, boot_mark="boot-id 58", ssh_ok=True)
    assert linux.required_sysctls == REQUIRED_SYSCTLS
    verdict = judged(linux)
    assert (verdict.verdict, verdict.outcome) == (Verdict.FAILED, CellOutcome.DEGRADED)
    assert "kernel.panic_on_oops could not be read" in verdict.reason


def test_a_bugcheck_event_is_a_fatal_finding(tmp_path):
    executor = ScriptedExecutor(boot=[boot(58)], health=[health(RUNNING, events=EVENTS)])
    channel, context = make_channel(tmp_path, executor)
    report = channel.probe(READY, health_check=True)
    assert [(f.title, f.fatal) for f in report.findings] == [("0x50 PAGE_FAULT_IN_NONPAGED_AREA", True)]
    verdict = judged(report)
    assert (verdict.outcome, verdict.reason) == (
        CellOutcome.CRASHED,
        "the console shows 0x50 PAGE_FAULT_IN_NONPAGED_AREA",
    )
    (event,) = json.loads((context.cell_dir("win11-24h2") / SYSTEM_EVENTS_FILE).read_text())
    assert (event["event_id"], event["data"]["BugcheckCode"]) == (41, "80")


def test_a_stopped_sensor_service_is_a_failed_health_check(tmp_path):
    stopped = {"name": "CSAgent", "status": "Stopped", "start_type": "Automatic"}
    executor = ScriptedExecutor(boot=[boot(58)], health=[health(stopped, events=NO_EVENTS)])
    channel, _ = make_channel(tmp_path, executor)
    report = channel.probe(READY, health_check=True)
    assert report.health_rc == 1
    verdict = judged(report)
    assert verdict.outcome is CellOutcome.DEGRADED
    assert "service CSAgent is Stopped" in verdict.reason
    assert judged(channel.probe(READY, health_check=False)).verdict is Verdict.HEALTHY  # before install


def test_a_missing_sensor_service_is_named(tmp_path):
    executor = ScriptedExecutor(boot=[boot(58)], health=[health(None, events=NO_EVENTS)])
    channel, _ = make_channel(tmp_path, executor)
    report = channel.probe(READY, health_check=True)
    assert (report.health_rc, report.health_output) == (1, "service CSAgent does not exist")


def test_winrm_cut_while_the_agent_answers_is_a_cut_network(tmp_path):
    executor = ScriptedExecutor(
        boot=[WinRMUnreachableError("WinRM at https://192.168.123.7:5986/wsman: timeout")]
    )
    host = AgentHost(agent_boot_id=58)
    channel, _ = make_channel(tmp_path, executor, host=host)
    report = channel.probe(READY, health_check=True)
    assert (report.agent_ok, report.ssh_ok, report.boot_mark) == (True, False, "boot-id 58")
    assert ("exec", r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe") in host.calls
    verdict = judged(report)
    assert verdict.outcome is CellOutcome.DEGRADED
    assert "network is cut" in verdict.reason and "WinRM at https://192.168.123.7" in verdict.reason


def test_a_reboot_nobody_asked_for_is_seen_through_the_agent(tmp_path):
    executor = ScriptedExecutor(boot=[WinRMUnreachableError("refused")])
    channel, _ = make_channel(tmp_path, executor, host=AgentHost(agent_boot_id=59))
    verdict = judged(channel.probe(READY, health_check=True))
    assert verdict.outcome is CellOutcome.CRASHED
    assert "rebooted on its own" in verdict.reason


def test_nothing_answering_is_silence(tmp_path):
    executor = ScriptedExecutor(boot=[WinRMUnreachableError("refused")])
    channel, _ = make_channel(tmp_path, executor, host=AgentHost(agent=False))
    report = channel.probe(READY, health_check=True)
    assert (report.agent_ok, report.boot_mark) == (False, None)
    assert judged(report).verdict is Verdict.SILENT


def test_a_guest_that_never_became_ready_is_asked_through_the_agent(tmp_path):
    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[boot(58)]))
    report = channel.probe(None, health_check=False)
    assert (report.agent_ok, report.ssh_ok, report.boot_mark) == (True, False, "boot-id 58")
    assert report.ssh_detail == "no address: the guest never became ready"


# -- install steps ---------------------------------------------------------------------------------


def test_the_candidate_step_plan_stages_the_variant_and_uses_winrm(tmp_path):
    channel, context = make_channel(tmp_path, ScriptedExecutor(boot=[boot(58)]))
    assert isinstance(channel, PlansSteps)
    planned = channel.plan_step(READY, InstallStep.candidate())
    assert planned.playbook == context.playbooks_dir / "windows" / "install_candidate.yml"
    host = planned.inventory["all"]["hosts"]["guest"]
    assert (host["ansible_host"], host["ansible_connection"], host["ansible_winrm_transport"]) == (
        "192.168.123.7",
        "winrm",
        "ntlm",
    )
    variables = planned.extravars
    assert variables["testbed_sensor_package"] == "sensor.msi"
    assert [(a["name"], a["sha256"]) for a in variables["testbed_artifacts"]] == [
        ("sensor-windows", sha256(MSI)),
        ("channel-291", sha256(CHANNEL)),
    ]
    staged = Path(variables["testbed_artifacts"][1]["src"])
    assert staged.read_bytes() == CHANNEL and staged.is_relative_to(context.work_dir)
    assert variables["testbed_installer_args"] == [r"TESTBED_CONTENT=C:\testbed\stage\C-00000291.sys"]


def test_a_content_variant_that_is_not_what_was_planned_is_refused(tmp_path):
    from dataclasses import replace

    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[boot(58)]))
    channel.plan = replace(channel.plan, content_digests=(("channel-291", "0" * 64),))
    with pytest.raises(
        InfrastructureError, match="channel-291: the as-shipped variant is not what was planned"
    ):
        channel.plan_step(READY, InstallStep.candidate())


def test_installer_arguments_per_package_kind(tmp_path):
    content = [StagedArtifact("a", "content", tmp_path / "a.bin", "0" * 64)]
    msi = StagedArtifact("s", "sensor_package", tmp_path / "S.MSI", "0" * 64)
    exe = StagedArtifact("s", "sensor_package", tmp_path / "setup.exe", "0" * 64)
    assert installer_arguments(msi, content) == [r"TESTBED_CONTENT=C:\testbed\stage\a.bin"]
    assert installer_arguments(exe, content) == ["--content", r"C:\testbed\stage\a.bin"]
    assert installer_arguments(exe, []) == []


def test_the_activity_workload_is_refused_for_windows(tmp_path):
    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[boot(58)]))
    with pytest.raises(ConfigurationError, match="Windows cells cannot run it"):
        channel.plan_step(READY, InstallStep.activity())


@pytest.mark.parametrize(
    ("outcome", "ok", "blame"),
    [
        (StepOutcome(ok=True, blame="candidate"), True, Blame.CANDIDATE),
        (
            StepOutcome(ok=False, blame="candidate", detail="candidate: run the sensor installer: 1603"),
            False,
            Blame.CANDIDATE,
        ),
        (
            StepOutcome(ok=False, blame="infrastructure", detail="unreachable", unreachable=True),
            False,
            Blame.INFRASTRUCTURE,
        ),
    ],
)
def test_a_step_ends_as_the_playbook_did(tmp_path, outcome, ok, blame):
    steps = Steps(outcome)
    channel, _ = make_channel(tmp_path, ScriptedExecutor(boot=[boot(58)]), steps=steps)
    finished = channel.run_step(READY, InstallStep.candidate(), threading.Event())
    assert (finished.ok, finished.blame, finished.unreachable) == (ok, blame, outcome.unreachable)
    assert finished.detail == outcome.detail
    ((playbook, inventory, _),) = steps.runs
    assert playbook.name == "install_candidate.yml"
    assert inventory["all"]["hosts"]["guest"]["ansible_user"] == "testbed"


# -- reboots ---------------------------------------------------------------------------------------


def test_reboot_over_winrm_once_the_guest_was_reached_else_through_the_agent(tmp_path):
    host = AgentHost()
    executor = ScriptedExecutor(boot=[boot(58)], reboot=[CommandResult(0, "", "")])
    channel, _ = make_channel(tmp_path, executor, host=host)
    channel.reboot()
    assert host.calls == [("reboot-agent", "tb-win")]
    channel.ask_ready(None)
    channel.reboot()
    assert executor.scripts[-1] == REBOOT_SCRIPT
