"""The engine: ``CellDriver`` carries out one cell's commands, ``RunDriver`` runs a plan's cells on
slots leased from a ``HostPool``.

Both get a scripted fake of ``CellPorts`` (and fake hosts and leases) instead of libvirt; every
timer that would make a test wait elapses at once (``ElapsingTimers``), so each test ends in well
under a second.
"""

import itertools
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from orchestrator.adapters.slot_leases import SlotLeases
from orchestrator.core.cell_events import (
    CellEvent,
    DomainCondition,
    DomainCrashed,
    DomainReset,
    GuestAnswered,
    HostLost,
    HostReconnected,
    ProbeFinished,
    StepFinished,
    Timer,
)
from orchestrator.core.matrix import cell_id_for
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.plan import CellPlan, ImageFacts, InstallStep, RunPlan, StepKind
from orchestrator.core.ports import Evidence
from orchestrator.core.probe_rules import REQUIRED_SYSCTLS, ProbeReport
from orchestrator.core.records import RunEventKind
from orchestrator.engine.cell_driver import CellDriver
from orchestrator.engine.executor import ThreadExecutor
from orchestrator.engine.host_pool import HostPool
from orchestrator.engine.run_driver import RunDriver
from orchestrator.engine.timers import ManualTimers
from orchestrator.errors import InfrastructureError
from tests.memory_leases import MemoryLeases

pytestmark = pytest.mark.unit

CANDIDATE = InstallStep.candidate()
DLP = InstallStep.product("dlp")


# -- fakes ----------------------------------------------------------------------------------------


class ElapsingTimers(ManualTimers):
    """ManualTimers whose clock jumps to a deadline as soon as one of the named timers is armed.

    With the default, every stability and soak window passes at once (the guest stayed up) while
    readiness, probe and install deadlines never come due, so a cell runs single-threaded to its end.
    """

    def __init__(
        self, elapse: frozenset[Timer] = frozenset({Timer.STABILITY, Timer.SOAK, Timer.NMI_GRACE})
    ) -> None:
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
    unhealthy_on_boot: int | None = None  # the health probe of this boot (after install) finds ssh dead
    silent_on_boot: int | None = None  # the health probe of this boot (after install) gets no agent
    lose_host_on_boot: int | None = None  # the libvirt connection breaks when this boot is probed
    reconnect_finds: DomainCondition = DomainCondition.RUNNING
    provision_error: Exception | None = None
    provision_errors_on_attempt: int | None = None  # provisioning fails on this attempt only
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
        if self.script.provision_errors_on_attempt == self.plan.attempt:
            raise InfrastructureError(f"overlay refused on attempt {self.plan.attempt}")

    def start_probe(self, boot: int, stale_mark: str | None) -> None:
        self.calls.append(("start_probe", boot, stale_mark))
        if self.script.probe_error is not None:
            raise self.script.probe_error
        if self.script.crash_on_boot == boot:
            self.post(DomainCrashed("panicked"))
        elif self.script.answer_probe:
            self.post(GuestAnswered(f"boot-{self.reboots}"))

    def start_health_probe(self, boot: int, health_check: bool) -> None:
        self.calls.append(("health_probe", boot, health_check))
        if self.script.lose_host_on_boot == boot and health_check:
            self.post(HostLost("libvirtd went away"))
            return
        broken = self.script.unhealthy_on_boot == boot and health_check
        report = ProbeReport(
            agent_ok=not (self.script.silent_on_boot == boot and health_check),
            boot_mark=f"boot-{self.reboots}",
            ssh_ok=not broken,
            sysctls=dict(REQUIRED_SYSCTLS),
            tainted=0,
            health_rc=0 if health_check else None,
        )
        self.post(ProbeFinished(report))

    def stop_probe(self) -> None:
        self.calls.append(("stop_probe",))

    def inject_nmi(self) -> None:
        self.calls.append(("inject_nmi",))
        self.post(DomainCrashed("panicked"))

    def reset_guest(self) -> None:
        self.calls.append(("reset_guest",))
        self.reboots += 1
        self.post(DomainReset())

    def start_reconnect(self) -> None:
        self.calls.append(("reconnect",))
        self.post(HostReconnected(self.script.reconnect_finds))

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
    accelerator: str = "qemu"  # as LibvirtHost.domain_type(): "kvm" or "qemu" (TCG)
    scripts: dict[str, Script] = field(default_factory=dict)
    default: Script = field(default_factory=Script)
    make_ports_error: dict[str, Exception] = field(default_factory=dict)
    ports: dict[str, ScriptedPorts] = field(default_factory=dict)

    def max_cells(self) -> int:
        return self.slots

    def free_memory_mib(self) -> int:
        return self.memory_mib

    def total_memory_mib(self) -> int:
        return self.memory_mib

    def domain_type(self) -> str:
        return self.accelerator

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
    assert result.outcome is CellOutcome.PASSED, result.reason
    assert result.reason.startswith("4 boot(s) ready and probed healthy")
    assert run.ports.calls == [
        ("provision",),
        ("start_probe", 0, None),
        ("health_probe", 0, False),  # the baseline
        ("start_step", "dlp"),
        ("health_probe", 0, False),
        ("request_reboot", 1),  # boot into the co-installed product
        ("start_probe", 1, "boot-0"),
        ("health_probe", 1, False),
        ("start_step", "candidate"),
        ("health_probe", 1, True),
        ("request_reboot", 2),
        ("start_probe", 2, "boot-1"),
        ("health_probe", 2, True),
        ("request_reboot", 3),
        ("start_probe", 3, "boot-2"),
        ("health_probe", 3, True),
        ("health_probe", 3, True),  # after the soak window
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
    assert (result.crash, result.warnings, result.attempt, result.retryable) == (None, [], 1, False)
    assert 1000.0 <= result.started_at < result.finished_at  # read from the injected clock
    assert result.seconds_after_install is not None and result.seconds_after_install > 0
    assert run.driver.context.state is CellState.DONE


def test_cell_driver_reports_every_change_and_times_every_phase(make_plan):
    run = cell_run(make_plan(reboots=1))
    result = run.driver.run()
    states = [after for _, after, _ in run.changes]
    assert states[0] is CellState.PROVISIONING
    assert states[-2:] == [CellState.CLEANING_UP, CellState.DONE]
    assert [cause for _, _, cause in run.changes][:3] == ["Begin", "Provisioned", "GuestAnswered"]
    assert [timing.phase for timing in result.timings] == [
        "pending",
        "provisioning",
        "boot 1/2: waiting for readiness",
        "boot 1/2: stability window",
        "boot 1/2: health probe",
        "install candidate",
        "boot 1/2: stability window after install",
        "boot 1/2: health probe",
        "boot 2/2: waiting for readiness",
        "boot 2/2: stability window",
        "boot 2/2: health probe",
        "boot 2/2: soak window",
        "boot 2/2: health probe after the soak window",
    ]
    assert all(timing.seconds > 0 for timing in result.timings)
    summary = run.ports.summary
    assert summary["outcome"] == "passed"
    assert (summary["cell_id"], summary["boot"], summary["unexpected_resets"]) == ("debian12-kernel-n", 1, 0)
    assert summary["healthy_boots"] == [0, 0, 1]
    assert [t["phase"] for t in summary["timings"]] == [t.phase for t in result.timings]


TAIL = [("stop_probe",), ("collect_evidence",), ("teardown",)]
BASELINE = [("provision",), ("start_probe", 0, None), ("health_probe", 0, False)]


@pytest.mark.parametrize(
    ("script", "expected", "calls"),
    [
        (
            Script(provision_error=InfrastructureError("host h1: cannot create overlay")),
            (CellOutcome.INFRA_ERROR, "provisioning the domain failed: host h1: cannot create overlay"),
            [("provision",), *TAIL],
        ),
        (
            Script(probe_error=ValueError("no channel")),
            (
                CellOutcome.INFRA_ERROR,
                "starting the readiness probe failed: internal error (ValueError): no channel",
            ),
            [("provision",), ("start_probe", 0, None), *TAIL],
        ),
        (
            Script(crash_after=StepKind.CANDIDATE, crash={"title": "BUG: kernel NULL pointer dereference"}),
            (CellOutcome.CRASHED, "the hypervisor reported a guest crash (panicked)"),
            [*BASELINE, ("start_step", "candidate"), *TAIL],
        ),
        (
            Script(crash_on_boot=1),
            (CellOutcome.CRASHED, "the hypervisor reported a guest crash (panicked)"),
            [
                *BASELINE,
                ("start_step", "candidate"),
                ("health_probe", 0, True),
                ("request_reboot", 1),
                ("start_probe", 1, "boot-0"),
                *TAIL,
            ],
        ),
        (
            Script(crash_on_boot=0),
            (
                CellOutcome.INFRA_ERROR,
                "before the candidate was installed: the hypervisor reported a guest crash (panicked)",
            ),
            [("provision",), ("start_probe", 0, None), *TAIL],
        ),
        (
            Script(unhealthy_on_boot=1),
            (
                CellOutcome.DEGRADED,
                "sshd does not answer while the guest agent does: the guest's network is cut",
            ),
            [
                *BASELINE,
                ("start_step", "candidate"),
                ("health_probe", 0, True),
                ("request_reboot", 1),
                ("start_probe", 1, "boot-0"),
                ("health_probe", 1, True),
                *TAIL,
            ],
        ),
        (
            Script(lose_host_on_boot=0, reconnect_finds=DomainCondition.CRASHED),
            (CellOutcome.CRASHED, "the guest crashed while the libvirt connection was down"),
            [
                *BASELINE,
                ("start_step", "candidate"),
                ("health_probe", 0, True),
                ("stop_probe",),
                ("reconnect",),
                *TAIL,
            ],
        ),
    ],
    ids=[
        "provision-fails",
        "probe-breaks",
        "crash-after-install",
        "crash-on-reboot",
        "crash-at-baseline",
        "network-cut-after-reboot",
        "host-lost-guest-crashed",
    ],
)
def test_cell_driver_outcomes(make_plan, script, expected, calls):
    run = cell_run(make_plan(reboots=1), script)
    result = run.driver.run()
    assert (result.outcome, result.reason[: len(expected[1])]) == expected
    assert [call[:1] if call[0] == "collect_evidence" else call for call in run.ports.calls] == calls
    assert run.ports.calls[-2] == ("collect_evidence", result.outcome)
    assert result.crash == script.crash
    assert result.warnings == []


def test_cell_driver_a_silent_guest_gets_an_nmi_and_is_hung(make_plan):
    run = cell_run(make_plan(reboots=1), Script(silent_on_boot=1))
    result = run.driver.run()
    assert result.outcome is CellOutcome.HUNG
    assert result.reason.startswith("the guest stopped answering (agent silent, no crash reported)")
    assert "NMI made it panic" in result.reason
    assert run.ports.calls[-6:] == [
        ("health_probe", 1, True),
        ("stop_probe",),  # the probe is silenced before the NMI goes in
        ("inject_nmi",),
        ("stop_probe",),
        ("collect_evidence", CellOutcome.HUNG),
        ("teardown",),
    ]


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


def test_cell_driver_a_bug_in_its_own_loop_ends_the_cell_as_infra(make_plan):
    run = cell_run(make_plan())

    def broken_listener(before, after, event):
        raise RuntimeError("listener bug")

    run.driver._on_change = broken_listener
    result = run.driver.run()
    assert result.outcome is CellOutcome.INFRA_ERROR
    assert result.reason == "internal error (RuntimeError): listener bug"
    assert result.retryable
    assert run.ports.calls[-2:] == [("collect_evidence", CellOutcome.INFRA_ERROR), ("teardown",)]


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


@pytest.fixture
def pools():
    made = []

    def make(hosts, leases=None):
        pool = HostPool(hosts, leases or MemoryLeases(), recheck_s=0.01)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def run_driver(
    plan, pool, hosts, publish=None, run_id="run-1", retries=1, needs_kvm=lambda _cell: False
) -> tuple[RunDriver, list]:
    events: list = []

    def record(event) -> None:
        events.append(event)
        if publish is not None:
            publish(event)

    driver = RunDriver(
        run_id,
        plan,
        pool,
        {host.name: host for host in hosts},
        publish=record,
        executor=ThreadExecutor(make_timers=ElapsingTimers),
        retries=retries,
        needs_kvm=needs_kvm,
    )
    return driver, events


CELLS = [cell_id_for("debian12-kernel-n", ()), cell_id_for("debian12-kernel-n", ("dlp",)), "c3", "c4", "c5"]


@pytest.mark.timeout(10)
def test_run_driver_runs_every_cell_and_numbers_its_events(make_plan, pools):
    plan = run_plan(make_plan, CELLS[:3])
    hosts = [FakeHost("h1", slots=2)]
    driver, events = run_driver(plan, pools(hosts), hosts)
    result = driver.run()
    assert [r.cell_id for r in result.cells] == CELLS[:3]  # plan order, whatever finished first
    assert [r.outcome for r in result.cells] == [CellOutcome.PASSED] * 3
    assert {r.host for r in result.cells} == {"h1"}
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.run_id == "run-1" for e in events)
    assert (events[0].kind, events[0].detail) == (RunEventKind.RUN_STARTED, "3 cell(s)")
    assert (events[-1].kind, events[-1].verdict) == (RunEventKind.RUN_FINISHED, RunVerdict.PASSED)
    assert events[-1].detail == "all 3 cell(s) passed"
    assert result.verdict is RunVerdict.PASSED
    for cell_id in CELLS[:3]:
        mine = [e for e in events if e.cell_id == cell_id]
        assert mine[0].state is CellState.PROVISIONING
        assert (mine[-1].kind, mine[-1].outcome) == (RunEventKind.CELL_FINISHED, CellOutcome.PASSED)
        assert mine[-1].data["cell_id"] == cell_id and mine[-1].data["outcome"] == "passed"
        assert {e.host for e in mine} == {"h1"}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("slots", [1, 2, 3])
def test_run_driver_never_runs_more_cells_than_a_host_takes(make_plan, pools, slots):
    occupancy = Occupancy(total=len(CELLS), expected_peak=slots)
    hosts = [FakeHost("h1", slots=slots, default=Script(occupancy=occupancy))]
    driver, _ = run_driver(run_plan(make_plan, CELLS), pools(hosts), hosts)
    result = driver.run()
    assert [r.outcome for r in result.cells] == [CellOutcome.PASSED] * len(CELLS)
    assert occupancy.peak == slots
    assert occupancy.finished == len(CELLS)


@pytest.mark.timeout(20)
def test_two_runs_on_one_pool_share_its_slots(make_plan, pools):
    """Two gates at once on one host: never more cells than slots, and both finish."""
    occupancy = Occupancy(total=6, expected_peak=2)
    hosts = [FakeHost("h1", slots=2, default=Script(occupancy=occupancy))]
    pool = pools(hosts)
    results = {}
    threads = []
    for run_id in ("run-a", "run-b"):
        driver, _ = run_driver(run_plan(make_plan, CELLS[:3]), pool, hosts, run_id=run_id)
        thread = threading.Thread(target=lambda d=driver, r=run_id: results.__setitem__(r, d.run()))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    assert occupancy.peak == 2
    assert {r: result.verdict for r, result in results.items()} == {
        "run-a": RunVerdict.PASSED,
        "run-b": RunVerdict.PASSED,
    }


def test_flocked_slots_are_shared_by_separate_lease_tables(tmp_path):
    """Two processes are two lease tables on the same files: together they never exceed the slots."""
    first, second = SlotLeases(tmp_path), SlotLeases(tmp_path)
    held = [first.acquire("h1", 2), second.acquire("h1", 2)]
    assert all(held) and {lease.slot for lease in held} == {0, 1}
    assert first.acquire("h1", 2) is None and second.acquire("h1", 2) is None
    assert first.busy("h1", 2) == second.busy("h1", 2) == 2
    second.release(held[1])
    assert first.busy("h1", 2) == 1
    assert first.acquire("h1", 2) is not None
    first.release_all()
    assert second.busy("h1", 2) == 0


def test_a_process_waiting_for_a_slot_is_seen_by_the_others_until_it_stops_or_dies(tmp_path):
    first, second = SlotLeases(tmp_path), SlotLeases(tmp_path)
    assert not first.others_waiting()
    second.set_waiting(True)
    assert first.others_waiting() and not second.others_waiting()  # nobody counts itself
    second.set_waiting(False)
    assert not first.others_waiting()
    # A process killed while waiting leaves its file, not its lock: it is not counted, and tidied.
    died = subprocess.run(
        [sys.executable, "-c", f"from orchestrator.adapters.slot_leases import SlotLeases as S; "
         f"S(__import__('pathlib').Path({str(tmp_path)!r})).set_waiting(True)"],
        check=False,
    )  # fmt: skip
    assert died.returncode == 0 and len(list((tmp_path / "waiting").iterdir())) == 1
    assert not first.others_waiting()
    assert not list((tmp_path / "waiting").iterdir())


@pytest.mark.timeout(20)
def test_a_pool_that_frees_a_slot_leaves_it_to_another_process_waiting_for_one(tmp_path):
    """Two processes, one slot, both waiting: the one that frees the slot does not take it back at
    once (a one-slot service once waited twenty minutes behind a batch of gates)."""
    hosts = [FakeHost("h1", slots=1)]
    first_leases = SlotLeases(tmp_path)
    first = HostPool(hosts, first_leases, recheck_s=0.05, yield_s=2.0)
    second = HostPool(hosts, SlotLeases(tmp_path), recheck_s=0.05, yield_s=2.0)
    granted: queue.Queue[tuple[str, object]] = queue.Queue()
    try:
        first.request("run-a", "c1", 1024, 0, lambda lease: granted.put(("first", lease)))
        _, held = granted.get(timeout=5)
        second.request("run-b", "c1", 1024, 0, lambda lease: granted.put(("second", lease)))
        first.request("run-a", "c2", 1024, 0, lambda lease: granted.put(("first", lease)))
        deadline = time.monotonic() + 5
        while not first_leases.others_waiting():  # the second pool has said it waits
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first.release(held)  # type: ignore[arg-type]
        assert granted.get(timeout=5)[0] == "second"
    finally:
        first.close()
        second.close()


@pytest.mark.timeout(10)
def test_run_driver_fail_fast_cancels_running_and_pending_cells(make_plan, pools):
    first, second, third = CELLS[:3]
    hosts = [
        FakeHost(
            "h1",
            slots=2,
            scripts={first: Script(crash_after=StepKind.CANDIDATE), second: Script(answer_probe=False)},
        )
    ]
    driver, events = run_driver(
        run_plan(make_plan, [first, second, third], fail_fast=True), pools(hosts), hosts
    )
    result = driver.run()
    cells = {r.cell_id: r for r in result.cells}
    assert cells[first].outcome is CellOutcome.CRASHED
    assert cells[second].outcome is CellOutcome.CANCELED
    assert cells[second].reason == f"fail-fast: {first} ended crashed"
    assert hosts[0].ports[second].calls[-1] == ("teardown",)
    assert cells[third].outcome is CellOutcome.CANCELED
    assert cells[third].host is None
    assert third not in hosts[0].ports  # never started
    # It ended when the run gave up on it: that is its time, even though it never started.
    assert cells[third].started_at is None
    assert cells[third].finished_at is not None and cells[first].finished_at is not None
    assert cells[third].finished_at >= cells[first].finished_at
    assert (events[-1].verdict, events[-1].detail) == (RunVerdict.FAILED, f"1 of 3 cell(s) failed: {first}")


@pytest.mark.timeout(10)
def test_run_driver_without_fail_fast_runs_on_after_a_failure(make_plan, pools):
    first, second = CELLS[:2]
    hosts = [FakeHost("h1", slots=1, scripts={first: Script(crash_after=StepKind.CANDIDATE)})]
    driver, _ = run_driver(run_plan(make_plan, [first, second]), pools(hosts), hosts)
    result = driver.run()
    assert [r.outcome for r in result.cells] == [CellOutcome.CRASHED, CellOutcome.PASSED]
    assert result.verdict is RunVerdict.FAILED


@pytest.mark.timeout(10)
def test_run_driver_cancel_stops_running_and_pending_cells(make_plan, pools):
    first, second = CELLS[:2]
    hosts = [FakeHost("h1", slots=1, default=Script(answer_probe=False))]
    driver: RunDriver | None = None

    def cancel_once_booting(event) -> None:
        if event.cell_id == first and event.state is CellState.BOOTING:
            driver.cancel("stopped by alice")

    driver, _ = run_driver(run_plan(make_plan, [first, second]), pools(hosts), hosts, cancel_once_booting)
    result = driver.run()
    assert [(r.outcome, r.reason) for r in result.cells] == [(CellOutcome.CANCELED, "stopped by alice")] * 2
    assert hosts[0].ports[first].calls[-1] == ("teardown",)
    assert second not in hosts[0].ports
    assert result.verdict is RunVerdict.INCONCLUSIVE


@pytest.mark.timeout(10)
def test_run_driver_retries_an_infra_error_once_on_a_fresh_clone(make_plan, pools):
    hosts = [FakeHost("h1", slots=1, default=Script(provision_errors_on_attempt=1))]
    driver, events = run_driver(run_plan(make_plan, CELLS[:1]), pools(hosts), hosts)
    result = driver.run()
    (cell,) = result.cells
    assert (cell.outcome, cell.attempt) == (CellOutcome.PASSED, 2)
    assert [a["outcome"] for a in cell.earlier_attempts] == ["infra_error"]
    assert "overlay refused on attempt 1" in cell.earlier_attempts[0]["reason"]
    assert any(e.phase == "retrying on a fresh clone" for e in events)
    assert result.verdict is RunVerdict.PASSED


@pytest.mark.timeout(10)
def test_run_driver_gives_up_after_the_retries_and_is_inconclusive(make_plan, pools):
    hosts = [FakeHost("h1", slots=1, default=Script(crash_on_boot=0))]  # the image itself crashes
    driver, _ = run_driver(run_plan(make_plan, CELLS[:1]), pools(hosts), hosts, retries=1)
    result = driver.run()
    (cell,) = result.cells
    assert (cell.outcome, cell.attempt) == (CellOutcome.INFRA_ERROR, 2)
    assert result.verdict is RunVerdict.INCONCLUSIVE  # never "failed": the candidate was never installed


@pytest.mark.timeout(10)
def test_run_driver_spreads_cells_over_hosts(make_plan, pools):
    hosts = [FakeHost("h1", slots=1), FakeHost("h2", slots=1)]
    occupancy = Occupancy(total=2, expected_peak=2)
    for host in hosts:
        host.default = Script(occupancy=occupancy)
    driver, _ = run_driver(run_plan(make_plan, CELLS[:2]), pools(hosts), hosts)
    result = driver.run()
    assert sorted(r.host for r in result.cells) == ["h1", "h2"]
    assert occupancy.peak == 2


@pytest.mark.timeout(10)
def test_run_driver_cell_no_host_can_take_is_an_infra_error(make_plan, pools):
    hosts = [FakeHost("h1", slots=4, memory_mib=512)]
    driver, events = run_driver(run_plan(make_plan, CELLS[:2], memory_mib=1024), pools(hosts), hosts)
    result = driver.run()
    assert [r.outcome for r in result.cells] == [CellOutcome.INFRA_ERROR] * 2
    assert result.cells[0].reason == "no host can take a cell needing 1024 MiB"
    assert hosts[0].ports == {}
    assert events[-1].verdict is RunVerdict.INCONCLUSIVE


@pytest.mark.timeout(10)
def test_run_driver_a_host_that_cannot_make_ports_fails_only_that_cell(make_plan, pools):
    first, second = CELLS[:2]
    hosts = [
        FakeHost(
            "h1", slots=1, make_ports_error={first: InfrastructureError("no guest family plug-in for bsd")}
        )
    ]
    driver, _ = run_driver(run_plan(make_plan, [first, second]), pools(hosts), hosts, retries=0)
    result = driver.run()
    assert [r.outcome for r in result.cells] == [CellOutcome.INFRA_ERROR, CellOutcome.PASSED]


@pytest.mark.timeout(10)
def test_a_failure_whose_control_twin_passes_stands(make_plan, pools):
    first = CELLS[0]
    hosts = [FakeHost("h1", slots=2, scripts={first: Script(crash_on_boot=1)})]
    plan = replace(run_plan(make_plan, [first]), controls=True)
    driver, events = run_driver(plan, pools(hosts), hosts)
    result = driver.run()
    original, twin = result.cells
    assert (original.cell_id, original.outcome) == (first, CellOutcome.CRASHED)
    assert original.reason.endswith("its control twin without the candidate passed")
    assert (twin.cell_id, twin.control_of, twin.outcome) == (f"{first}~control", first, CellOutcome.PASSED)
    assert ("start_step", "candidate") not in hosts[0].ports[twin.cell_id].calls
    assert result.verdict is RunVerdict.FAILED
    assert any(e.phase == "waiting for its control twin" for e in events)


@pytest.mark.timeout(10)
def test_a_failure_whose_control_twin_fails_too_is_the_images(make_plan, pools):
    first = CELLS[0]
    scripts = {first: Script(crash_on_boot=1), f"{first}~control": Script(crash_on_boot=1)}
    hosts = [FakeHost("h1", slots=2, scripts=scripts)]
    plan = replace(run_plan(make_plan, [first]), controls=True)
    driver, _ = run_driver(plan, pools(hosts), hosts)
    result = driver.run()
    original, twin = result.cells
    assert twin.outcome is CellOutcome.CRASHED
    assert original.outcome is CellOutcome.INFRA_ERROR
    assert "its control twin without the candidate failed too" in original.reason
    assert result.verdict is RunVerdict.INCONCLUSIVE  # never "failed" on the image's own crash


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("expected", "verdict"),
    [(CellOutcome.HUNG, RunVerdict.PASSED), (CellOutcome.BOOT_LOOP, RunVerdict.INCONCLUSIVE)],
)
def test_a_control_image_doing_as_expected_counts_as_a_pass(make_plan, pools, expected, verdict):
    """The guest never answers: as a control-hang image should; not as a control-boot-loop one."""
    hang = ImageFacts(
        "control-x", "linux", "busybox", "6.1.0-56-amd64", "f" * 64, expected_outcome=str(expected)
    )
    cell = replace(make_plan(cell_id="control-x", image=hang, stability_s=0.0), reboots=1)
    plan = RunPlan("gate", "sensor", "7.1.0", {}, False, (cell,))
    hosts = [FakeHost("h1", slots=1, default=Script(answer_probe=False))]
    elapse = frozenset({Timer.STABILITY, Timer.SOAK, Timer.NMI_GRACE, Timer.READY})
    driver = RunDriver(
        "run-1",
        plan,
        pools(hosts),
        {"h1": hosts[0]},
        publish=lambda event: None,
        executor=ThreadExecutor(make_timers=lambda: ElapsingTimers(elapse)),
    )
    result = driver.run()
    (control,) = result.cells
    assert control.attempt == 1  # a control image is not retried: it is there to fail
    assert (control.expected_outcome, control.observed) == (expected, CellOutcome.HUNG)
    assert control.as_expected is (expected is CellOutcome.HUNG)
    assert result.verdict is verdict


@pytest.mark.timeout(10)
def test_a_run_past_its_deadline_is_canceled_and_inconclusive(make_plan, pools):
    hosts = [FakeHost("h1", slots=1, default=Script(answer_probe=False))]
    plan = run_plan(make_plan, CELLS[:2])
    ticks = itertools.count(0.0, 10_000.0)  # the watchdog's clock leaps: every look is hours later
    driver = RunDriver(
        "run-1",
        plan,
        pools(hosts),
        {"h1": hosts[0]},
        publish=lambda event: None,
        executor=ThreadExecutor(make_timers=ElapsingTimers),
        monotonic=lambda: next(ticks),
    )
    result = driver.run()
    # the running cell is canceled (or, as stuck, abandoned); the waiting one never starts
    assert {r.outcome for r in result.cells} <= {CellOutcome.CANCELED, CellOutcome.INFRA_ERROR}
    assert any(r.reason.startswith("the run took longer than its deadline") for r in result.cells)
    assert result.verdict is RunVerdict.INCONCLUSIVE


@pytest.mark.timeout(10)
def test_a_ticket_a_verdict_waits_on_goes_before_its_priority_but_not_above_a_higher_one(pools):
    hosts = [FakeHost("h1", slots=1)]
    pool = pools(hosts)
    granted: queue.Queue = queue.Queue()
    pool.request("run-a", "blocker", 1024, 0, granted.put)
    held = granted.get(timeout=5)
    order: list[str] = []

    def grant(cell_id):
        def take(lease):
            order.append(cell_id)
            pool.release(lease)

        return take

    # the four arrive while the one slot is held: they all wait, and then go in this order
    pool.request("run-a", "fresh", 1024, 0, grant("fresh"))
    pool.request("run-a", "twin", 1024, 0, grant("twin"), ahead=True)
    pool.request("run-b", "urgent", 1024, 1, grant("urgent"))
    pool.request("run-b", "later", 1024, 0, grant("later"))
    pool.release(held)
    deadline = time.monotonic() + 5
    while len(order) < 4:
        assert time.monotonic() < deadline, order
        time.sleep(0.01)
    assert order == ["urgent", "twin", "fresh", "later"]


@pytest.mark.timeout(10)
def test_a_cell_that_needs_kvm_goes_only_to_a_kvm_host_however_free_the_others_are(make_plan, pools):
    emulated, kvm = FakeHost("tcg", slots=4), FakeHost("kvm", slots=1, accelerator="kvm")
    plan = run_plan(make_plan, ["win-1", "win-2", "linux-1"])
    hosts = [emulated, kvm]
    driver, _ = run_driver(plan, pools(hosts), hosts, needs_kvm=lambda c: c.cell_id.startswith("win"))

    result = driver.run()

    assert {cell.cell_id: (cell.host, cell.outcome) for cell in result.cells} == {
        "win-1": ("kvm", CellOutcome.PASSED),  # one after the other on the one KVM slot
        "win-2": ("kvm", CellOutcome.PASSED),
        "linux-1": ("tcg", CellOutcome.PASSED),  # the most free slots
    }


@pytest.mark.timeout(10)
def test_a_cell_that_needs_kvm_where_no_host_offers_it_ends_infra_error_at_once(make_plan, pools):
    emulated = FakeHost("tcg")
    plan = run_plan(make_plan, ["win-1"])
    driver, _ = run_driver(plan, pools([emulated]), [emulated], needs_kvm=lambda _cell: True)

    (cell,) = driver.run().cells

    assert (cell.outcome, cell.reason) == (
        CellOutcome.INFRA_ERROR,
        "no host can take a cell needing 1024 MiB and KVM",
    )
    assert emulated.ports == {}  # never started
