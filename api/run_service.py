"""Runs as the service drives them: accept (validated before anything starts), cancel, and pick up
after a restart. The routes call this; it calls the engine and the stores, never HTTP.

Restart reconciliation (``reconcile``, once the engine is open — opening it has already removed
the domains, overlays, SSH keys and staged copies of runs whose process died):
- a run another live process still holds (its run lock) is left alone: a ``testbed gate`` of this
  machine, say;
- a run the engine can pick up again is resumed: finished cells keep their results, interrupted
  ones run again as a new attempt — once; a run interrupted again ends its leftover cells
  ``infra_error`` (the engine's ``MAX_RESUMES``);
- a run that cannot be prepared again (no stored candidate or matrix, images gone) is closed: its
  unfinished cells end ``infra_error`` and it gets its verdict like any other run;
- finished runs are never touched.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from api.engine import Engine, EngineFactory, RunControl
from orchestrator.adapters.run_lock import run_is_alive
from orchestrator.config import Settings
from orchestrator.core.records import CellResult, RunEventKind
from orchestrator.engine.gate import PreparedGate, prepare_gate_from_bytes
from orchestrator.engine.host_pool import PoolStatus
from orchestrator.errors import ConfigurationError, TestbedError
from orchestrator.store import (
    CandidateRecord,
    CandidateStore,
    FieldProblem,
    MatrixRecord,
    MatrixStore,
    RejectedInputError,
    RunRecord,
    RunStatus,
    SqlRunStore,
    problems_from,
)
from orchestrator.store.closing import close_interrupted

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 120.0
"""At shutdown, how long canceled runs get to tear their cells down before the engine closes."""


class EngineState(StrEnum):
    """Whether the service can run anything."""

    STARTING = "starting"  # the engine is being opened (hosts connected, leftovers swept)
    READY = "ready"  # runs can be started
    UNAVAILABLE = "unavailable"  # the engine could not be opened: runs are refused with the reason
    STOPPED = "stopped"  # the service is shutting down


class RunNotFoundError(LookupError):
    """No run with this id is in the store."""


class RunConflictError(Exception):
    """The run is in no state for what was asked (e.g. canceling a finished run)."""


class EngineUnavailableError(Exception):
    """The engine cannot start runs now; the message says why."""


@dataclass
class ReconcileReport:
    """What a restart did with the runs it found unfinished."""

    resumed: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)  # another live process holds them


@dataclass(frozen=True)
class RunRequest:
    """What a client asks for: a stored candidate, and a stored matrix or a matrix text."""

    candidate_id: str
    matrix_id: str | None = None
    matrix_text: str | None = None
    priority: int = 0


def matrix_source(matrix_id: str) -> str:
    """Where a run's matrix came from, as a URI for its attestation."""
    return f"urn:endpoint-testbed:matrix:{matrix_id}"


class RunService:
    """Starts, cancels and reconciles runs over one engine; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        runs: SqlRunStore,
        candidates: CandidateStore,
        matrices: MatrixStore,
        make_engine: EngineFactory,
    ) -> None:
        self._settings = settings
        self._runs = runs
        self._candidates = candidates
        self._matrices = matrices
        self._make_engine = make_engine
        self._engine: Engine | None = None
        self._state = EngineState.STARTING
        self._problem = ""
        self._live: dict[str, RunControl] = {}
        self._lock = threading.Lock()

    # -- the engine's life ----------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def problem(self) -> str:
        """Why the engine is unavailable ('' when it is not)."""
        return self._problem

    @property
    def engine(self) -> Engine | None:
        """The open engine, or None."""
        return self._engine if self._state is EngineState.READY else None

    def open_engine(self) -> Engine | None:
        """Open the engine (it sweeps what killed runs left); None, with the reason kept, if it
        cannot be opened — the service still serves what is stored, and refuses new runs."""
        try:
            engine = self._make_engine(self._settings, self._runs)
            swept = engine.open()
        except TestbedError as exc:
            self._state, self._problem = EngineState.UNAVAILABLE, str(exc)
            log.error("the engine is unavailable, runs will be refused: %s", exc)  # noqa: TRY400 - the message is the whole story
            return None
        log.info("engine open; leftovers of dead runs: %s", swept)
        self._engine, self._state = engine, EngineState.READY
        return engine

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Cancel what still runs, give it ``grace_s`` to tear down, close the engine."""
        engine, self._engine = self._engine, None
        self._state = EngineState.STOPPED
        live = self._running()
        for control in live:
            control.cancel("the service was stopped")
        deadline = time.monotonic() + grace_s
        for control in live:
            try:
                control.wait(max(0.0, deadline - time.monotonic()))
            except TestbedError as exc:
                log.error("run %s ended in trouble at shutdown: %s", control.run_id, exc)  # noqa: TRY400 - as above
        if engine is not None:
            engine.close()

    def pool_status(self) -> PoolStatus | None:
        engine = self.engine
        return None if engine is None else engine.pool.status()

    # -- runs -----------------------------------------------------------------------------------

    def create(self, request: RunRequest, *, submitted_by: str | None) -> str:
        """Validate everything, then start the run; its id. Nothing is started on bad input."""
        engine = self._ready_engine()
        candidate = self._candidates.get(request.candidate_id)
        if candidate is None:
            raise _refused("candidate_id", f"no candidate {request.candidate_id} is stored")
        matrix = self._matrix_of(request, submitted_by)
        prepared = self._prepare(candidate, matrix)
        control = engine.start(
            prepared,
            priority=request.priority,
            candidate_id=candidate.candidate_id,
            matrix_id=matrix.matrix_id,
            submitted_by=submitted_by,
        )
        with self._lock:
            self._live[control.run_id] = control
        return control.run_id

    def cancel(self, run_id: str, reason: str) -> None:
        record = self._runs.get_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id)
        if record.status is RunStatus.FINISHED:
            raise RunConflictError(f"run {run_id} has finished already")
        with self._lock:
            control = self._live.get(run_id)
        if control is None or control.done:
            raise RunConflictError(
                f"run {run_id} is not driven by this service (another process runs it, or it is "
                "being picked up after a restart)"
            )
        control.cancel(reason)

    def is_live(self, run_id: str) -> bool:
        with self._lock:
            control = self._live.get(run_id)
        return control is not None and not control.done

    # -- restart reconciliation -----------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Resume or close every unfinished run no live process holds (see the module's notes)."""
        engine = self._ready_engine()
        report = self._reconcile(engine)
        log.info(
            "restart reconciliation: resumed %s, closed %s, left to their process %s",
            report.resumed,
            report.closed,
            report.left_alone,
        )
        return report

    def _reconcile(self, engine: Engine) -> ReconcileReport:
        report = ReconcileReport()
        for record in self._runs.unfinished_runs():
            if self.is_live(record.run_id):
                continue
            if run_is_alive(Path(record.evidence_dir)):
                report.left_alone.append(record.run_id)
                continue
            finished = [CellResult.from_dict(data) for data in self._runs.cell_results(record.run_id)]
            try:
                prepared = self._prepare_again(record)
            except TestbedError as exc:
                self._close(record, finished, f"interrupted, and cannot be resumed: {exc}")
                report.closed.append(record.run_id)
                continue
            done = {result.cell_id for result in finished}
            control = engine.resume(
                prepared,
                record.run_id,
                finished=finished,
                last_sequence=record.last_sequence,
                # A cell that never had an event never started: it runs as its first attempt.
                attempts={
                    cell.cell_id: cell.attempt if cell.last_sequence else 0
                    for cell in record.cells
                    if cell.cell_id not in done
                },
                resumes=max(0, self._runs.count_events(record.run_id, RunEventKind.RUN_STARTED) - 1),
                priority=record.priority,
            )
            with self._lock:
                self._live[record.run_id] = control
            report.resumed.append(record.run_id)
        return report

    def _close(self, record: RunRecord, finished: list[CellResult], reason: str) -> None:
        events, result = close_interrupted(record, finished, reason, time.time())
        for event in events:
            self._runs.append_event(event)
        self._runs.finish_run(result)

    def _prepare_again(self, record: RunRecord) -> PreparedGate:
        if record.candidate_id is None or record.matrix_id is None:
            raise ConfigurationError("it was not started from a stored candidate and matrix")
        candidate = self._candidates.get(record.candidate_id)
        matrix = self._matrices.get(record.matrix_id)
        if candidate is None or matrix is None:
            raise ConfigurationError("its candidate or matrix is no longer stored")
        return self._prepare(candidate, matrix)

    # -- helpers --------------------------------------------------------------------------------

    def _ready_engine(self) -> Engine:
        engine = self.engine
        if engine is None:
            why = f": {self._problem}" if self._problem else f" ({self._state})"
            raise EngineUnavailableError(f"the testbed cannot run anything now{why}")
        return engine

    def _running(self) -> list[RunControl]:
        with self._lock:
            self._live = {run_id: c for run_id, c in self._live.items() if not c.done}
            return list(self._live.values())

    def _matrix_of(self, request: RunRequest, submitted_by: str | None) -> MatrixRecord:
        if request.matrix_text is not None and request.matrix_id is None:
            try:
                record, _ = self._matrices.add(request.matrix_text, created_by=submitted_by)
            except RejectedInputError as exc:
                problems = [FieldProblem("body", _joined("matrix", p.field), p.message) for p in exc.problems]
                raise RejectedInputError("the run was refused: its matrix is invalid", problems) from exc
            return record
        if request.matrix_id is not None and request.matrix_text is None:
            stored = self._matrices.get(request.matrix_id)
            if stored is None:
                raise _refused("matrix_id", f"no matrix {request.matrix_id} is stored")
            return stored
        raise _refused("matrix_id", "give either matrix_id (a stored matrix) or matrix (its text)")

    def _prepare(self, candidate: CandidateRecord, matrix: MatrixRecord) -> PreparedGate:
        """The engine's own validation (images, candidate files, plan); problems named by field."""
        try:
            return prepare_gate_from_bytes(
                self._settings,
                matrix.text.encode(),
                Path(candidate.stored_path),
                source=matrix_source(matrix.matrix_id),
            )
        except RejectedInputError:
            raise
        except ConfigurationError as exc:
            problems = [
                FieldProblem(p.location, p.field, _without_paths(p.message, self._settings, candidate))
                for p in problems_from(exc, "matrix")
            ]
            raise RejectedInputError("the run cannot start with this candidate and matrix", problems) from exc


def _refused(field_name: str, message: str) -> RejectedInputError:
    return RejectedInputError("the run was refused", [FieldProblem("body", field_name, message)])


def _joined(prefix: str, field_name: str) -> str:
    return f"{prefix}.{field_name}" if field_name else prefix


def _without_paths(message: str, settings: Settings, candidate: CandidateRecord) -> str:
    """Server paths stay on the server: the stored candidate is 'the candidate'."""
    return message.replace(candidate.stored_path, "the candidate").replace(str(settings.state_dir), "")
