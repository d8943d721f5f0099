"""The service's side of runs, with an engine that only records what it is asked: what a restart
resumes (and with what), what it closes, what it leaves to a live process; refusals by field;
cancel and shutdown. Real SQLite stores; no VM."""

import dataclasses
from pathlib import Path

import pytest

from api.run_service import (
    EngineState,
    EngineUnavailableError,
    RunConflictError,
    RunNotFoundError,
    RunRequest,
    RunService,
)
from orchestrator.adapters.run_lock import RunLock
from orchestrator.config import Settings
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind
from orchestrator.engine.event_bus import EventBus
from orchestrator.engine.host_pool import PoolStatus
from orchestrator.errors import InfrastructureError
from orchestrator.store import (
    BundleLimits,
    CandidateStore,
    MatrixStore,
    RejectedInputError,
    RunStatus,
    SqlRunStore,
    open_database,
)
from tests.api.bundles import good_bundle
from tests.api.simulated_engine import write_image_catalog

pytestmark = pytest.mark.unit

PLAN = {"cells": [{"cell_id": c, "image": {"name": "sim-linux", "kernel": "k"}} for c in ("n", "n1", "n2")]}


@dataclasses.dataclass
class Control:
    run_id: str
    canceled: list[str] = dataclasses.field(default_factory=list)
    finished: bool = False

    @property
    def done(self) -> bool:
        return self.finished

    def wait(self, timeout=None):
        return None

    def cancel(self, reason: str) -> None:
        self.canceled.append(reason)
        self.finished = True


class RecordingEngine:
    """Records start/resume; opens, or refuses to as told."""

    refuse: str = ""

    def __init__(self, settings: Settings, store: SqlRunStore) -> None:
        self.store = store
        self.bus = EventBus(store)
        self.started: list[tuple] = []
        self.resumed: list[dict] = []
        self.controls: list[Control] = []
        self.closed = False

    @property
    def pool(self):
        class Pool:
            def status(self) -> PoolStatus:
                return PoolStatus(queued=3, slots={"local": (1, 2)})

        return Pool()

    def open(self) -> object:
        if self.refuse:
            raise InfrastructureError(self.refuse)
        return "swept"

    def close(self) -> None:
        self.closed = True

    def start(
        self, prepared, *, run_id=None, priority=0, candidate_id=None, matrix_id=None, submitted_by=None
    ):
        run_id = run_id or f"run-{len(self.started)}"
        self.store.create_run(
            run_id,
            prepared.plan.as_dict(),
            candidate_id=candidate_id,
            matrix_id=matrix_id,
            priority=priority,
            submitted_by=submitted_by,
            evidence_dir="/nowhere",
        )
        self.started.append((run_id, prepared.plan.matrix_name, priority, submitted_by))
        self.controls.append(Control(run_id))
        return self.controls[-1]

    def resume(self, prepared, run_id, *, finished, last_sequence, attempts, resumes, priority=0):
        self.resumed.append(
            {
                "run_id": run_id,
                "finished": [r.cell_id for r in finished],
                "last_sequence": last_sequence,
                "attempts": dict(attempts),
                "resumes": resumes,
                "priority": priority,
                "cells": [c.cell_id for c in prepared.plan.cells],
            }
        )
        return Control(run_id)


@pytest.fixture
def world(tmp_path):
    settings = Settings(state_dir=tmp_path / "state")
    write_image_catalog(settings.images_dir)
    database = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    runs = SqlRunStore(database)
    candidates = CandidateStore(database, settings.candidates_dir, BundleLimits())
    matrices = MatrixStore(database)
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(good_bundle())
    candidate, _ = candidates.add_bundle(bundle)
    matrix, _ = matrices.add("name: sim\nimages: [sim-linux, sim-linux-slow]\nreboots: 1\n")
    engines: list[RecordingEngine] = []

    def make_engine(settings, store):
        engines.append(RecordingEngine(settings, store))
        return engines[-1]

    service = RunService(settings, runs, candidates, matrices, make_engine)
    yield dataclasses.make_dataclass(
        "World", ["settings", "runs", "service", "engines", "candidate", "matrix"]
    )(settings, runs, service, engines, candidate, matrix)
    database.close()


def interrupted_run(world, run_id: str, *, stored_inputs: bool = True) -> Path:
    """A run a dead process left: cell n finished, n1 was booting (attempt 2), n2 never started."""
    run_dir = world.settings.runs_dir / run_id
    run_dir.mkdir(parents=True)
    world.runs.create_run(
        run_id,
        PLAN,
        candidate_id=world.candidate.candidate_id if stored_inputs else None,
        matrix_id=world.matrix.matrix_id if stored_inputs else None,
        priority=5,
        submitted_by="ci",
        evidence_dir=str(run_dir),
    )
    passed = CellResult("n", "sim-linux", "k", "local", CellOutcome.PASSED, "ok")
    for event in [
        RunEvent(run_id, 1, 1.0, RunEventKind.RUN_STARTED),
        RunEvent(
            run_id,
            2,
            2.0,
            RunEventKind.CELL_FINISHED,
            cell_id="n",
            outcome=CellOutcome.PASSED,
            data=passed.as_dict(),
        ),
        RunEvent(run_id, 3, 3.0, RunEventKind.CELL_CHANGED, cell_id="n1", state=CellState.BOOTING, attempt=2),
    ]:
        world.runs.append_event(event)
    return run_dir


def test_a_restart_resumes_what_a_dead_process_left_with_everything_it_had(world):
    interrupted_run(world, "dead")
    world.runs.append_event(RunEvent("dead", 4, 4.0, RunEventKind.RUN_STARTED, detail="resumed once"))

    world.service.open_engine()
    report = world.service.reconcile()

    assert report.resumed == ["dead"]
    (resumed,) = world.engines[0].resumed
    assert resumed["finished"] == ["n"]
    assert resumed["last_sequence"] == 4
    assert resumed["attempts"] == {"n1": 2, "n2": 0}  # n2 never started: it runs as its first attempt
    assert resumed["resumes"] == 1  # started twice already: the engine gives up on leftovers now
    assert resumed["priority"] == 5
    assert resumed["cells"] == ["sim-linux", "sim-linux-slow"]  # prepared again from the stored matrix
    assert world.service.is_live("dead")


def test_a_run_another_live_process_holds_is_left_alone(world):
    lock = RunLock(interrupted_run(world, "alive"))
    try:
        world.service.open_engine()
        report = world.service.reconcile()
    finally:
        lock.release()

    assert report.left_alone == ["alive"]
    assert world.engines[0].resumed == []
    assert world.runs.get_run("alive").status is RunStatus.RUNNING


def test_a_run_that_cannot_be_prepared_again_is_closed_with_its_finished_cells_kept(world):
    interrupted_run(world, "orphan", stored_inputs=False)

    world.service.open_engine()
    report = world.service.reconcile()

    assert report.closed == ["orphan"]
    closed = world.runs.get_run("orphan")
    assert (closed.status, closed.verdict) == (RunStatus.FINISHED, RunVerdict.INCONCLUSIVE)
    outcomes = {c.cell_id: (c.outcome, c.reason) for c in closed.cells}
    assert outcomes["n"] == (CellOutcome.PASSED, "ok")
    assert outcomes["n1"][0] is CellOutcome.INFRA_ERROR
    assert "cannot be resumed" in outcomes["n1"][1]


def test_finished_runs_are_never_touched(world):
    interrupted_run(world, "done")
    world.runs.append_event(RunEvent("done", 4, 4.0, RunEventKind.RUN_FINISHED, verdict=RunVerdict.PASSED))
    before = world.runs.get_run("done")

    world.service.open_engine()
    report = world.service.reconcile()

    assert report.resumed == report.closed == report.left_alone == []
    assert world.runs.get_run("done") == before


def test_a_run_is_validated_then_started_with_who_and_how_urgent(world):
    world.service.open_engine()

    run_id = world.service.create(
        RunRequest(world.candidate.candidate_id, matrix_id=world.matrix.matrix_id, priority=7),
        submitted_by="qa",
    )

    assert world.engines[0].started == [(run_id, "sim", 7, "qa")]
    assert world.service.is_live(run_id)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"candidate_id": "0" * 64, "matrix_text": "name: x\nimages: [sim-linux]\n"}, "candidate_id"),
        ({"matrix_id": "0" * 64}, "matrix_id"),
        ({}, "matrix_id"),
        ({"matrix_text": "name: x\nimages: [sim-linux]\ntimeouts: {ready: 1}\n"}, "matrix.timeouts.ready"),
    ],
)
def test_bad_requests_are_refused_by_field_and_start_nothing(world, request_fields, field):
    world.service.open_engine()
    fields = {"candidate_id": world.candidate.candidate_id, **request_fields}

    with pytest.raises(RejectedInputError) as refused:
        world.service.create(RunRequest(**fields), submitted_by="qa")

    assert any(p.field == field for p in refused.value.problems), refused.value.problems
    assert world.engines[0].started == []


def test_a_matrix_the_images_cannot_run_is_refused_without_server_paths(world):
    world.service.open_engine()

    with pytest.raises(RejectedInputError) as refused:
        world.service.create(
            RunRequest(world.candidate.candidate_id, matrix_text="name: x\nimages: [windows-11]\n"),
            submitted_by="qa",
        )

    text = str(refused.value)
    assert "windows-11" in text
    assert str(world.settings.state_dir) not in text


def test_without_an_engine_runs_are_refused_with_the_reason(world):
    RecordingEngine.refuse = "no libvirt host is usable: qemu:///system: connection refused"
    try:
        assert world.service.open_engine() is None
    finally:
        RecordingEngine.refuse = ""

    assert world.service.state is EngineState.UNAVAILABLE
    assert world.service.pool_status() is None
    with pytest.raises(EngineUnavailableError, match="connection refused"):
        world.service.create(
            RunRequest(world.candidate.candidate_id, matrix_id=world.matrix.matrix_id), submitted_by="qa"
        )


def test_cancel_reaches_a_live_run_and_refuses_the_rest(world):
    world.service.open_engine()
    run_id = world.service.create(
        RunRequest(world.candidate.candidate_id, matrix_id=world.matrix.matrix_id), submitted_by="qa"
    )
    interrupted_run(world, "elsewhere")
    with pytest.raises(RunNotFoundError):
        world.service.cancel("missing", "why")
    with pytest.raises(RunConflictError, match="not driven by this service"):
        world.service.cancel("elsewhere", "why")

    world.service.cancel(run_id, "wrong build")

    assert [(c.run_id, c.canceled) for c in world.engines[0].controls] == [(run_id, ["wrong build"])]


def test_stopping_cancels_what_runs_and_closes_the_engine(world):
    world.service.open_engine()
    run_id = world.service.create(
        RunRequest(world.candidate.candidate_id, matrix_id=world.matrix.matrix_id), submitted_by="qa"
    )
    control = world.service._live[run_id]

    world.service.stop(grace_s=0)

    assert control.canceled == ["the service was stopped"]
    assert world.engines[0].closed
    assert world.service.state is EngineState.STOPPED
