"""The engine: ``CellDriver`` carries out one cell's commands, ``RunDriver`` places and runs cells.

Both get a scripted fake of ``CellPorts`` (and fake hosts) instead of libvirt; the cell driver runs
single-threaded on ``ManualTimers``, the run driver in its own threads on ``ThreadTimers`` with a
zero stability window, so every test ends in well under a second.
"""

import itertools
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.core.cell_events import (
    CellEvent,
    DomainCrashed,
    DomainReset,
    GuestAnswered,
    StepFinished,
    Timer,
)
from orchestrator.core.matrix import cell_id_for
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.plan import CellPlan, InstallStep, RunPlan, StepKind
from orchestrator.core.records import RunEventKind
from orchestrator.engine.cell_driver import CellDriver, Evidence
from orchestrator.engine.run_driver import RunDriver
from orchestrator.engine.timers import ManualTimers
from orchestrator.errors import InfrastructureError

pytestmark = pytest.mark.unit

CANDIDATE = InstallStep.candidate()
DLP = InstallStep.product("dlp")


# -- fakes ----------------------------------------------------------------------------------------


class ElapsingTimers(ManualTimers):
    """ManualTimers whose clock jumps to a deadline as soon as one of the named timers is armed.

    With the default, every stability window passes at once (the guest stayed up) while readiness
    deadlines never come due, so a cell runs single-threaded to its end.
    """

    def __init__(self, elapse: frozenset[Timer] = frozenset({Timer.STABILITY})) -> None:
        super().__init__()
        self.elapse = elapse

    def arm(self, key: Hashable, seconds: float, fire: Callable[[], None]) -> None:
        super().arm(key, seconds, fire)
        if key in self.elapse:
            self.advance(seconds)


class Occupancy:
    """Counts cells between provision and teardown, and holds each new one until the expected
    number run side by side, so a driver that over-commits a host is caught every time."""

    def __init__(self, total: int, expected_peak: int, patience_s: float = 2.0) -> None:
        self._condition = threading.Condition()
        self._total = total
        self._expected_peak = expected_peak
        self._patience_s = patience_s
        self.active = 0
        self.peak = 0
        self.finished = 0

    def enter(self) -> None:
        with self._condition:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self._condition.notify_all()
            self._condition.wait_for(
                lambda: self.active >= min(self._expected_peak, self._total - self.finished),
                timeout=self._patience_s,
            )

    def leave(self) -> None:
        with self._condition:
            self.active -= 1
            self.finished += 1
            self._condition.notify_all()


@dataclass
class Script:
    """How a scripted guest behaves; the defaults make a healthy one."""

    answer_probe: bool = True  # the readiness probe gets an answer from the current boot
    crash_after: StepKind | None = None  # the hypervisor reports a crash right after this step
    crash_on_boot: int | None = None  # the hypervisor reports a crash instead of this boot's answer
    provision_error: Exception | None = None
    probe_error: Exception | None = None
    collect_error: Exception | None = None
    teardown_error: Exception | None = None
    crash: dict[str, Any] | None = None  # what evidence reports as the crash
    occupancy: Occupancy | None = None


@dataclass
class ScriptedPorts:
    """A ``CellPorts`` that records every call and answers through ``post`` as its script says.

    Boot marks are ``boot-<n>``, n counting the reboots this fake carried out.
    """

    plan: CellPlan
    post: Callable[[CellEvent], None]
    script: Script = field(default_factory=Script)
    host_name: str = "fake-host"
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    reboots: int = 0

    def provision(self) -> None:
        self.calls.append(("provision",))
        if self.script.occupancy is not None:
            self.script.occupancy.enter()
        if self.script.provision_error is not None:
            raise self.script.provision_error

    def start_probe(self, boot: int, stale_mark: str | None) -> None:
        self.calls.append(("start_probe", boot, stale_mark))
        if self.script.probe_error is not None:
            raise self.script.probe_error
        if self.script.crash_on_boot == boot:
            self.post(DomainCrashed("panicked"))
        elif self.script.answer_probe:
            self.post(GuestAnswered(f"boot-{self.reboots}"))

    def stop_probe(self) -> None:
        self.calls.append(("stop_probe",))

    def start_step(self, step: InstallStep) -> None:
        self.calls.append(("start_step", step.name))
        self.post(StepFinished(step, ok=True))
        if self.script.crash_after is step.kind:
            self.post(DomainCrashed("panicked"))

    def cancel_step(self) -> None:
        self.calls.append(("cancel_step",))

    def request_reboot(self, boot: int) -> None:
        self.calls.append(("request_reboot", boot))
        self.reboots += 1
        self.post(DomainReset())

    def collect_evidence(self, outcome: CellOutcome, reason: str, summary: dict[str, Any]) -> Evidence:
        self.calls.append(("collect_evidence", outcome))
        self.summary = summary
        if self.script.collect_error is not None:
            raise self.script.collect_error
        return Evidence(directory=f"/evidence/{self.plan.cell_id}", crash=self.script.crash)

    def teardown(self) -> None:
        self.calls.append(("teardown",))
        if self.script.occupancy is not None:
            self.script.occupancy.leave()
        if self.script.teardown_error is not None:
            raise self.script.teardown_error


@dataclass
class FakeHost:
    """A ``CellHost`` with fixed capacity that hands out scripted ports, per cell id if asked."""

    name: str
    slots: int = 2
    memory_mib: int = 64 * 1024
    scripts: dict[str, Script] = field(default_factory=dict)
    default: Script = field(default_factory=Script)
    make_ports_error: dict[str, Exception] = field(default_factory=dict)
    ports: dict[str, ScriptedPorts] = field(default_factory=dict)

    def max_cells(self) -> int:
        return self.slots

    def free_memory_mib(self) -> int:
        return self.memory_mib

    def make_ports(self, plan: CellPlan, post: Callable[[CellEvent], None]) -> ScriptedPorts:
        if plan.cell_id in self.make_ports_error:
            raise self.make_ports_error[plan.cell_id]
        ports = ScriptedPorts(plan, post, self.scripts.get(plan.cell_id, self.default), self.name)
        self.ports[plan.cell_id] = ports
        return ports


# -- CellDriver -------------------------------------------------------------------------------------


@dataclass
class CellRun:
    driver: CellDriver
    ports: ScriptedPorts
    changes: list[tuple[CellState, CellState, str]]


def cell_run(plan, script=None, timers=None) -> CellRun:
    made: list[ScriptedPorts] = []
    changes: list[tuple[CellState, CellState, str]] = []

    def make_ports(plan, post):
        made.append(ScriptedPorts(plan, post, script or Script()))
        return made[-1]

    clock = itertools.count(1000.0, 1.0)
    driver = CellDriver(
        plan,
        make_ports,
        timers or ElapsingTimers(),
        lambda before, after, event: changes.append((before.state, after.state, type(event).__name__)),
        clock=lambda: next(clock),
    )
    return CellRun(driver, made[0], changes)


def test_cell_driver_runs_a_healthy_cell_to_passed(make_plan):
    run = cell_run(make_plan(products=("dlp",), reboots=2))
    result = run.driver.run()
    assert result.outcome is CellOutcome.PASSED
    assert result.reason == "3 boot(s) ready and stable"
    assert run.ports.calls == [
        ("provision",),
        ("start_probe", 0, None),
        ("start_step", "dlp"),
        ("start_step", "candidate"),
        ("request_reboot", 1),
        ("start_probe", 1, "boot-0"),
        ("request_reboot", 2),
        ("start_probe", 2, "boot-1"),
        ("stop_probe",),
        ("collect_evidence", CellOutcome.PASSED),
        ("teardown",),
    ]
    assert (result.cell_id, result.image, result.kernel) == (
        "debian12-kernel-n",
        "debian12-kernel-n",
        "6.1.0-56-amd64",
    )
    assert result.host == "fake-host"
    assert result.evidence_dir == "/evidence/debian12-kernel-n"
    assert (result.crash, result.warnings) == (None, [])
    assert 1000.0 <= result.started_at < result.finished_at  # read from the injected clock
    assert run.driver.context.state is CellState.DONE


def test_cell_driver_reports_every_change_and_times_every_phase(make_plan):
    run = cell_run(make_plan(reboots=1))
    result = run.driver.run()
    states = [after for _, after, _ in run.changes]
    assert states[0] is CellState.PROVISIONING
    assert states[-2:] == [CellState.CLEANING_UP, CellState.DONE]
    assert [cause for _, _, cause in run.changes][:3] == ["Begin", "Provisioned", "GuestAnswered"]
    assert "DomainReset" in [cause for _, _, cause in run.changes]  # counted as a change: awaiting_reset
    assert [timing.phase for timing in result.timings] == [
        "pending",
        "provisioning",
        "boot 1/2: waiting for readiness",
        "boot 1/2: stability window",
        "install candidate",
        "boot 1/2: stability window after install",
        "boot 2/2: waiting for readiness",
        "boot 2/2: stability window",
    ]
    assert all(timing.seconds > 0 for timing in result.timings)
    summary = run.ports.summary
    assert summary["outcome"] == "passed"
    assert (summary["cell_id"], summary["boot"], summary["unexpected_resets"]) == ("debian12-kernel-n", 1, 0)
    assert [t["phase"] for t in summary["timings"]] == [t.phase for t in result.timings]


TAIL = [("stop_probe",), ("collect_evidence",), ("teardown",)]


@pytest.mark.parametrize(
    ("script", "elapse", "expected", "calls"),
    [
        (
            Script(provision_error=InfrastructureError("host h1: cannot create overlay")),
            {Timer.STABILITY},
            (CellOutcome.INFRA_ERROR, "Provision: host h1: cannot create overlay"),
            [("provision",), *TAIL],
        ),
        (
            Script(probe_error=ValueError("no channel")),
            {Timer.STABILITY},
            (CellOutcome.INFRA_ERROR, "ProbeReadiness: internal error (ValueError): no channel"),
            [("provision",), ("start_probe", 0, None), *TAIL],
        ),
        (
            Script(crash_after=StepKind.CANDIDATE, crash={"title": "BUG: kernel NULL pointer dereference"}),
            {Timer.STABILITY},
            (CellOutcome.CRASHED, "the hypervisor reported a guest crash (panicked)"),
            [("provision",), ("start_probe", 0, None), ("start_step", "candidate"), *TAIL],
        ),
        (
            Script(crash_on_boot=1),
            {Timer.STABILITY},
            (CellOutcome.CRASHED, "the hypervisor reported a guest crash (panicked)"),
            [
                ("provision",),
                ("start_probe", 0, None),
                ("start_step", "candidate"),
                ("request_reboot", 1),
                ("start_probe", 1, "boot-0"),
                *TAIL,
            ],
        ),
        (
            Script(answer_probe=False),
            {Timer.STABILITY, Timer.READY},
            (CellOutcome.HUNG, "boot 1 did not become ready within 300s"),
            [("provision",), ("start_probe", 0, None), *TAIL],
        ),
    ],
    ids=["provision-fails", "probe-breaks", "crash-after-install", "crash-on-reboot", "never-ready"],
)
def test_cell_driver_outcomes(make_plan, script, elapse, expected, calls):
    run = cell_run(make_plan(reboots=1), script, ElapsingTimers(frozenset(elapse)))
    result = run.driver.run()
    assert (result.outcome, result.reason) == expected
    assert [call[:1] if call[0] == "collect_evidence" else call for call in run.ports.calls] == calls
    assert run.ports.calls[-2] == ("collect_evidence", result.outcome)
    assert result.crash == script.crash
    assert result.warnings == []


def test_cell_driver_teardown_failure_keeps_the_outcome_and_warns(make_plan):
    run = cell_run(make_plan(), Script(teardown_error=InfrastructureError("cannot remove domain tb-x")))
    result = run.driver.run()
    assert result.outcome is CellOutcome.PASSED
    assert result.warnings == ["Teardown: cannot remove domain tb-x"]
    assert result.evidence_dir == "/evidence/debian12-kernel-n"
    assert run.driver.context.state is CellState.DONE


def test_cell_driver_evidence_failure_warns_and_still_tears_down(make_plan):
    run = cell_run(make_plan(), Script(crash_after=StepKind.CANDIDATE, collect_error=OSError("disk full")))
    result = run.driver.run()
    assert result.outcome is CellOutcome.CRASHED
    assert result.warnings == ["CollectEvidence: internal error (OSError): disk full"]
    assert result.evidence_dir is None
    assert run.ports.calls[-1] == ("teardown",)


def test_cell_driver_cancel_before_start_still_tears_down(make_plan):
    run = cell_run(make_plan())
    run.driver.cancel("stopped by alice")
    result = run.driver.run()
    assert (result.outcome, result.reason) == (CellOutcome.CANCELED, "stopped by alice")
    assert run.ports.calls == [
        ("provision",),
        ("stop_probe",),
        ("collect_evidence", CellOutcome.CANCELED),
        ("teardown",),
    ]


def test_cell_driver_cancels_every_timer_when_collecting_evidence(make_plan):
    timers = ElapsingTimers()
    run = cell_run(make_plan(reboots=1), Script(crash_on_boot=1), timers)
    run.driver.run()
    assert timers.armed() == set()


# -- RunDriver --------------------------------------------------------------------------------------


def run_plan(make_plan, cell_ids, *, fail_fast=False, memory_mib=1024) -> RunPlan:
    cells = tuple(
        make_plan(cell_id=cell_id, reboots=1, stability_s=0.0, ready_s=30.0, memory_mib=memory_mib)
        for cell_id in cell_ids
    )
    return RunPlan("gate", "sensor", "7.1.0", {"sensor-linux": "d" * 64}, fail_fast, cells)


def run_driver(plan, hosts, publish=None) -> tuple[RunDriver, list]:
    events: list = []

    def record(event) -> None:
        events.append(event)
        if publish is not None:
            publish(event)

    return RunDriver("run-1", plan, hosts, record), events


CELLS = [cell_id_for("debian12-kernel-n", ()), cell_id_for("debian12-kernel-n", ("dlp",)), "c3", "c4", "c5"]


@pytest.mark.timeout(10)
def test_run_driver_runs_every_cell_and_numbers_its_events(make_plan):
    plan = run_plan(make_plan, CELLS[:3])
    driver, events = run_driver(plan, [FakeHost("h1", slots=2)])
    results = driver.run()
    assert [r.cell_id for r in results] == CELLS[:3]  # plan order, whatever finished first
    assert [r.outcome for r in results] == [CellOutcome.PASSED] * 3
    assert {r.host for r in results} == {"h1"}
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.run_id == "run-1" for e in events)
    assert (events[0].kind, events[0].detail) == (RunEventKind.RUN_STARTED, "3 cell(s)")
    assert (events[-1].kind, events[-1].verdict) == (RunEventKind.RUN_FINISHED, RunVerdict.PASSED)
    assert events[-1].detail == "all 3 cell(s) passed"
    for cell_id in CELLS[:3]:
        mine = [e for e in events if e.cell_id == cell_id]
        assert mine[0].state is CellState.PROVISIONING
        assert (mine[-1].state, mine[-1].outcome) == (CellState.DONE, CellOutcome.PASSED)
        assert {e.host for e in mine} == {"h1"}
    assert RunDriver.verdict(results).verdict is RunVerdict.PASSED


@pytest.mark.timeout(10)
@pytest.mark.parametrize("slots", [1, 2, 3])
def test_run_driver_never_runs_more_cells_than_a_host_takes(make_plan, slots):
    occupancy = Occupancy(total=len(CELLS), expected_peak=slots)
    host = FakeHost("h1", slots=slots, default=Script(occupancy=occupancy))
    driver, _ = run_driver(run_plan(make_plan, CELLS), [host])
    results = driver.run()
    assert [r.outcome for r in results] == [CellOutcome.PASSED] * len(CELLS)
    assert occupancy.peak == slots
    assert occupancy.finished == len(CELLS)


@pytest.mark.timeout(10)
def test_run_driver_fail_fast_cancels_running_and_pending_cells(make_plan):
    first, second, third = CELLS[:3]
    host = FakeHost(
        "h1",
        slots=2,
        scripts={first: Script(crash_on_boot=0), second: Script(answer_probe=False)},
    )
    driver, events = run_driver(run_plan(make_plan, [first, second, third], fail_fast=True), [host])
    results = {r.cell_id: r for r in driver.run()}
    assert results[first].outcome is CellOutcome.CRASHED
    assert results[second].outcome is CellOutcome.CANCELED
    assert results[second].reason == f"fail-fast: {first} ended crashed"
    assert host.ports[second].calls[-1] == ("teardown",)
    assert results[third].outcome is CellOutcome.CANCELED
    assert results[third].host is None
    assert third not in host.ports  # never started
    assert (events[-1].verdict, events[-1].detail) == (RunVerdict.FAILED, f"1 of 3 cell(s) failed: {first}")


@pytest.mark.timeout(10)
def test_run_driver_without_fail_fast_runs_on_after_a_failure(make_plan):
    first, second = CELLS[:2]
    host = FakeHost("h1", slots=1, scripts={first: Script(crash_after=StepKind.CANDIDATE)})
    driver, _ = run_driver(run_plan(make_plan, [first, second]), [host])
    results = driver.run()
    assert [r.outcome for r in results] == [CellOutcome.CRASHED, CellOutcome.PASSED]
    assert RunDriver.verdict(results).verdict is RunVerdict.FAILED


@pytest.mark.timeout(10)
def test_run_driver_cancel_stops_running_and_pending_cells(make_plan):
    first, second = CELLS[:2]
    host = FakeHost("h1", slots=1, default=Script(answer_probe=False))
    driver: RunDriver | None = None

    def cancel_once_booting(event) -> None:
        if event.cell_id == first and event.state is CellState.BOOTING:
            driver.cancel("stopped by alice")

    driver, _ = run_driver(run_plan(make_plan, [first, second]), [host], cancel_once_booting)
    results = driver.run()
    assert [(r.outcome, r.reason) for r in results] == [(CellOutcome.CANCELED, "stopped by alice")] * 2
    assert host.ports[first].calls[-1] == ("teardown",)
    assert second not in host.ports
    assert RunDriver.verdict(results).verdict is RunVerdict.INCONCLUSIVE


@pytest.mark.timeout(10)
def test_run_driver_spreads_cells_over_hosts(make_plan):
    hosts = [FakeHost("h1", slots=1), FakeHost("h2", slots=1)]
    occupancy = Occupancy(total=2, expected_peak=2)
    for host in hosts:
        host.default = Script(occupancy=occupancy)
    driver, _ = run_driver(run_plan(make_plan, CELLS[:2]), hosts)
    results = driver.run()
    assert sorted(r.host for r in results) == ["h1", "h2"]
    assert occupancy.peak == 2


@pytest.mark.timeout(10)
def test_run_driver_cell_no_host_can_take_is_an_infra_error(make_plan):
    host = FakeHost("h1", slots=4, memory_mib=512)
    driver, events = run_driver(run_plan(make_plan, CELLS[:2], memory_mib=1024), [host])
    results = driver.run()
    assert [r.outcome for r in results] == [CellOutcome.INFRA_ERROR] * 2
    assert results[0].reason == "no host can take a cell needing 1024 MiB"
    assert host.ports == {}
    assert events[-1].verdict is RunVerdict.INCONCLUSIVE


@pytest.mark.timeout(10)
def test_run_driver_a_host_that_cannot_make_ports_fails_only_that_cell(make_plan):
    first, second = CELLS[:2]
    host = FakeHost(
        "h1", slots=1, make_ports_error={first: InfrastructureError("no guest family plug-in for bsd")}
    )
    driver, _ = run_driver(run_plan(make_plan, [first, second]), [host])
    results = driver.run()
    assert [r.outcome for r in results] == [CellOutcome.INFRA_ERROR, CellOutcome.PASSED]
