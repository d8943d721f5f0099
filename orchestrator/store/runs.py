"""The SQL run store: runs, their cells' projection and every event, for the engine and the API.

``append_event`` commits the event in its own transaction before it returns, so whoever fans it
out afterwards (the engine's event bus) never tells a subscriber about an event a restart could
lose. Every call opens its own session: the store is shared by the engine's threads.
"""

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import RunEvent, RunEventKind, RunResult
from orchestrator.errors import ConfigurationError, InternalError
from orchestrator.store.database import Database
from orchestrator.store.models import CandidateRow, CellRow, EventRow, MatrixRow, RunRow
from orchestrator.store.projection import apply_to_cell, apply_to_run, cell_from_result, run_from_result
from orchestrator.store.records import CellRecord, PhaseTimingRecord, RunRecord, RunStatus


class SqlRunStore:
    """Runs and their events in SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._database = database

    # -- what the engine calls ----------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        plan: dict[str, Any],
        *,
        candidate_id: str | None,
        matrix_id: str | None,
        priority: int,
        submitted_by: str | None,
        evidence_dir: str,
    ) -> None:
        """The run's record (status queued, its plan, a pending row per planned cell) from now on."""
        with self._database.session(write=True) as session:
            if session.get(RunRow, run_id) is not None:
                raise InternalError(f"run {run_id} exists already")
            if candidate_id is not None and session.get(CandidateRow, candidate_id) is None:
                raise ConfigurationError(f"candidate_id: no candidate {candidate_id} is stored")
            if matrix_id is not None and session.get(MatrixRow, matrix_id) is None:
                raise ConfigurationError(f"matrix_id: no matrix {matrix_id} is stored")
            session.add(
                RunRow(
                    id=run_id,
                    status=str(RunStatus.QUEUED),
                    verdict=None,
                    summary="",
                    priority=priority,
                    submitted_by=submitted_by,
                    candidate_id=candidate_id,
                    matrix_id=matrix_id,
                    plan=plan,
                    result=None,
                    evidence_dir=evidence_dir,
                    last_sequence=0,
                    created_at=time.time(),
                )
            )
            session.flush()  # the run row before its cells: foreign keys are checked per statement
            for position, cell_id in enumerate(_planned_cell_ids(plan)):
                session.add(_new_cell_row(run_id, cell_id, position))

    def append_event(self, event: RunEvent) -> None:
        """Persist the event (committed when this returns) and move the run/cell projection.

        The same event delivered twice is stored once; a different event under a sequence number
        already taken is a bug of the engine and raises ``InternalError``.
        """
        payload = json.loads(json.dumps(event.as_dict()))  # as it reads back: tuples become lists
        with self._database.session(write=True) as session:
            run_row = _locked_run(session, event.run_id)
            taken = session.scalar(
                select(EventRow).where(EventRow.run_id == event.run_id, EventRow.sequence == event.sequence)
            )
            if taken is not None:
                if taken.payload == payload:
                    return
                raise InternalError(
                    f"run {event.run_id}: event {event.sequence} is stored already with other content"
                )
            session.add(
                EventRow(
                    run_id=event.run_id,
                    sequence=event.sequence,
                    at=event.at,
                    kind=str(event.kind),
                    cell_id=event.cell_id,
                    payload=payload,
                )
            )
            _write_run(run_row, apply_to_run(_run_record(run_row), event))
            if event.cell_id is not None:
                cell_row = session.get(CellRow, (event.run_id, event.cell_id))
                if cell_row is None:
                    cell_row = _new_cell_row(event.run_id, event.cell_id, _cell_count(session, event.run_id))
                    session.add(cell_row)
                _write_cell(cell_row, apply_to_cell(_cell_record(cell_row), event))

    def events_after(self, run_id: str, after_sequence: int, limit: int = 1000) -> list[RunEvent]:
        """The run's events numbered above ``after_sequence``, in order, at most ``limit``."""
        with self._database.session() as session:
            payloads = session.scalars(
                select(EventRow.payload)
                .where(EventRow.run_id == run_id, EventRow.sequence > after_sequence)
                .order_by(EventRow.sequence)
                .limit(limit)
            ).all()
        return [RunEvent.from_dict(payload) for payload in payloads]

    def cell_results(self, run_id: str) -> list[dict[str, Any]]:
        """The final result (``CellResult.as_dict``) of every cell that finished, in event order:
        what a restart keeps of an interrupted run."""
        with self._database.session() as session:
            payloads = session.scalars(
                select(EventRow.payload)
                .where(EventRow.run_id == run_id, EventRow.kind == str(RunEventKind.CELL_FINISHED))
                .order_by(EventRow.sequence)
            ).all()
        results: dict[str, dict[str, Any]] = {}
        for payload in payloads:
            data = payload.get("data")
            if isinstance(data, dict) and payload.get("cell_id"):
                results[str(payload["cell_id"])] = data  # a later result of the same cell wins
        return list(results.values())

    def count_events(self, run_id: str, kind: RunEventKind) -> int:
        """How many events of this kind the run has (e.g. RUN_STARTED: how often it was started)."""
        with self._database.session() as session:
            count = session.scalar(
                select(func.count())
                .select_from(EventRow)
                .where(EventRow.run_id == run_id, EventRow.kind == str(kind))
            )
        return int(count or 0)

    def finish_run(self, result: RunResult) -> None:
        """The run is finished with the engine's result: its verdict and every cell's final state."""
        with self._database.session(write=True) as session:
            run_row = _locked_run(session, result.run_id)
            _write_run(run_row, run_from_result(_run_record(run_row), result))
            for cell in result.cells:
                cell_row = session.get(CellRow, (result.run_id, cell.cell_id))
                if cell_row is None:
                    cell_row = _new_cell_row(result.run_id, cell.cell_id, _cell_count(session, result.run_id))
                    session.add(cell_row)
                _write_cell(cell_row, cell_from_result(_cell_record(cell_row), cell))

    def unfinished_runs(self) -> list[RunRecord]:
        """Runs queued or running, oldest first, with their cells: what a restart must reconcile."""
        with self._database.session() as session:
            rows = session.scalars(
                select(RunRow).where(RunRow.status != str(RunStatus.FINISHED)).order_by(RunRow.created_at)
            ).all()
            return [self._with_cells(session, row) for row in rows]

    # -- what the API reads -------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._database.session() as session:
            row = session.get(RunRow, run_id)
            return None if row is None else self._with_cells(session, row)

    def run_progress(self, run_id: str) -> tuple[RunStatus, int, RunVerdict | None] | None:
        """The run's status, its newest event's number and its verdict, cheaply (event streams
        poll this)."""
        with self._database.session() as session:
            row = session.execute(
                select(RunRow.status, RunRow.last_sequence, RunRow.verdict).where(RunRow.id == run_id)
            ).first()
        if row is None:
            return None
        return RunStatus(row[0]), int(row[1]), RunVerdict(row[2]) if row[2] else None

    def has_result(self, run_id: str) -> bool:
        """Whether the engine's result is stored (a deleted run has nothing more to wait for)."""
        with self._database.session() as session:
            row = session.execute(select(RunRow.result).where(RunRow.id == run_id)).first()
        return row is None or row[0] is not None

    def get_cell(self, run_id: str, cell_id: str) -> CellRecord | None:
        with self._database.session() as session:
            row = session.get(CellRow, (run_id, cell_id))
            return None if row is None else _cell_record(row)

    def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        verdict: RunVerdict | None = None,
        candidate_id: str | None = None,
        matrix_id: str | None = None,
        submitted_by: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[RunRecord], int]:
        """Newest first, without cells (with their counts); and how many match in all."""
        conditions = [
            column == value
            for column, value in (
                (RunRow.status, status),
                (RunRow.verdict, verdict),
                (RunRow.candidate_id, candidate_id),
                (RunRow.matrix_id, matrix_id),
                (RunRow.submitted_by, submitted_by),
            )
            if value is not None
        ]
        with self._database.session() as session:
            total = session.scalar(select(func.count()).select_from(RunRow).where(*conditions)) or 0
            rows = session.scalars(
                select(RunRow)
                .where(*conditions)
                .order_by(RunRow.created_at.desc(), RunRow.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            counts = _cell_counts(session, [row.id for row in rows])
            return [_run_record(row, counts=counts.get(row.id, {})) for row in rows], total

    def runs_by_verdict(self) -> dict[tuple[RunStatus, RunVerdict | None], int]:
        """How many runs there are per (status, verdict): for the metrics."""
        with self._database.session() as session:
            rows = session.execute(
                select(RunRow.status, RunRow.verdict, func.count()).group_by(RunRow.status, RunRow.verdict)
            ).all()
        return {
            (RunStatus(status), RunVerdict(verdict) if verdict else None): count
            for status, verdict, count in rows
        }

    def cells_by_outcome(self) -> dict[CellOutcome, int]:
        """How many cells ended with each outcome: for the metrics."""
        with self._database.session() as session:
            rows = session.execute(
                select(CellRow.outcome, func.count())
                .where(CellRow.outcome.is_not(None))
                .group_by(CellRow.outcome)
            ).all()
        return {CellOutcome(outcome): count for outcome, count in rows if outcome}

    def _with_cells(self, session: Session, row: RunRow) -> RunRecord:
        cells = session.scalars(
            select(CellRow).where(CellRow.run_id == row.id).order_by(CellRow.position, CellRow.cell_id)
        ).all()
        records = tuple(_cell_record(cell) for cell in cells)
        return _run_record(row, cells=records, counts=_count(records))


def _planned_cell_ids(plan: Mapping[str, Any]) -> list[str]:
    cells = plan.get("cells")
    if not isinstance(cells, list):
        return []
    return [str(cell["cell_id"]) for cell in cells if isinstance(cell, dict) and cell.get("cell_id")]


def _locked_run(session: Session, run_id: str) -> RunRow:
    """The run's row, locked until the transaction ends (PostgreSQL; SQLite locks the database)."""
    row = session.scalar(select(RunRow).where(RunRow.id == run_id).with_for_update())
    if row is None:
        raise InternalError(f"run {run_id} is not in the store (create_run first)")
    return row


def _cell_count(session: Session, run_id: str) -> int:
    return session.scalar(select(func.count()).select_from(CellRow).where(CellRow.run_id == run_id)) or 0


def _new_cell_row(run_id: str, cell_id: str, position: int) -> CellRow:
    return CellRow(
        run_id=run_id,
        cell_id=cell_id,
        position=position,
        state=str(CellState.PENDING),
        phase="",
        outcome=None,
        reason="",
        crash_title=None,
        detail="",
        host=None,
        attempt=1,
        timings=[],
        started_at=None,
        finished_at=None,
        last_sequence=0,
    )


def _count(cells: Iterable[CellRecord]) -> dict[str, int]:
    """Cells by the outcome the verdict counts (a control image doing as declared: passed), or by
    state until they end."""
    counts: dict[str, int] = {}
    for cell in cells:
        key = str(cell.verdict_outcome or cell.state)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _cell_counts(session: Session, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """``_count`` for many runs at once, in the database."""
    if not run_ids:
        return {}
    as_expected = and_(CellRow.expected_outcome.is_not(None), CellRow.observed == CellRow.expected_outcome)
    key = case((as_expected, str(CellOutcome.PASSED)), else_=func.coalesce(CellRow.outcome, CellRow.state))
    rows = session.execute(
        select(CellRow.run_id, key, func.count())
        .where(CellRow.run_id.in_(run_ids))
        .group_by(CellRow.run_id, key)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for run_id, name, count in rows:
        counts.setdefault(run_id, {})[name] = count
    return counts


def _run_record(
    row: RunRow, *, cells: tuple[CellRecord, ...] = (), counts: Mapping[str, int] | None = None
) -> RunRecord:
    return RunRecord(
        run_id=row.id,
        status=RunStatus(row.status),
        plan=row.plan,
        evidence_dir=row.evidence_dir,
        created_at=row.created_at,
        priority=row.priority,
        verdict=RunVerdict(row.verdict) if row.verdict else None,
        summary=row.summary,
        submitted_by=row.submitted_by,
        candidate_id=row.candidate_id,
        matrix_id=row.matrix_id,
        result=row.result,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_sequence=row.last_sequence,
        cells=cells,
        cell_counts=dict(counts or {}),
    )


def _write_run(row: RunRow, record: RunRecord) -> None:
    row.status = str(record.status)
    row.verdict = str(record.verdict) if record.verdict else None
    row.summary = record.summary
    row.result = dict(record.result) if record.result is not None else None
    row.started_at = record.started_at
    row.finished_at = record.finished_at
    row.last_sequence = record.last_sequence


def _cell_record(row: CellRow) -> CellRecord:
    return CellRecord(
        run_id=row.run_id,
        cell_id=row.cell_id,
        state=CellState(row.state),
        phase=row.phase,
        outcome=CellOutcome(row.outcome) if row.outcome else None,
        reason=row.reason,
        crash_title=row.crash_title,
        detail=row.detail,
        host=row.host,
        attempt=row.attempt,
        timings=tuple(PhaseTimingRecord(t["phase"], float(t["seconds"])) for t in row.timings),
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_sequence=row.last_sequence,
        observed=CellOutcome(row.observed) if row.observed else None,
        expected_outcome=CellOutcome(row.expected_outcome) if row.expected_outcome else None,
    )


def _write_cell(row: CellRow, record: CellRecord) -> None:
    row.state = str(record.state)
    row.phase = record.phase
    row.outcome = str(record.outcome) if record.outcome else None
    row.reason = record.reason
    row.crash_title = record.crash_title
    row.detail = record.detail
    row.host = record.host
    row.attempt = record.attempt
    row.timings = [{"phase": t.phase, "seconds": t.seconds} for t in record.timings]
    row.started_at = record.started_at
    row.finished_at = record.finished_at
    row.last_sequence = record.last_sequence
    row.observed = str(record.observed) if record.observed else None
    row.expected_outcome = str(record.expected_outcome) if record.expected_outcome else None
