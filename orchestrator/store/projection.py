"""How run events move the run and cell records the API and the page show: pure functions, no I/O.

Rules:
- events of one run are numbered; an event at or below the record's ``last_sequence`` is old or
  repeated and changes nothing (a replay after a restart is harmless);
- a run is ``queued`` until its first event, ``running`` after it, ``finished`` with RUN_FINISHED
  (or when the engine hands over the result);
- a cell takes the state, phase, host and attempt of each event about it; a new attempt (a retry
  on a fresh clone) clears what the previous attempt ended with; CELL_FINISHED carries the final
  result (outcome, reason, crash title, timings, times, and for a control image what it did and
  was declared to do) in its ``data``.
"""

from dataclasses import replace
from typing import Any

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.store.records import CellRecord, PhaseTimingRecord, RunRecord, RunStatus


def apply_to_run(run: RunRecord, event: RunEvent) -> RunRecord:
    """The run record after ``event`` (one of its own)."""
    if event.sequence <= run.last_sequence:
        return run
    status = RunStatus.RUNNING if run.status is RunStatus.QUEUED else run.status
    started_at = run.started_at if run.started_at is not None else event.at
    changed = replace(run, status=status, started_at=started_at, last_sequence=event.sequence)
    if event.kind is RunEventKind.RUN_FINISHED:
        data = event.data or {}
        verdict = event.verdict or (RunVerdict(data["verdict"]) if data.get("verdict") else None)
        return replace(
            changed,
            status=RunStatus.FINISHED,
            verdict=verdict,
            summary=str(data.get("summary") or event.detail),
            finished_at=event.at,
        )
    return changed


def apply_to_cell(cell: CellRecord, event: RunEvent) -> CellRecord:
    """The cell record after ``event`` (one about this cell)."""
    if event.sequence <= cell.last_sequence:
        return cell
    if event.attempt > cell.attempt:
        # A retry: what the earlier attempt ended with no longer describes the cell.
        cell = replace(
            cell,
            outcome=None,
            reason="",
            crash_title=None,
            timings=(),
            finished_at=None,
            attempt=event.attempt,
            observed=None,
            expected_outcome=None,
        )
    state = event.state or cell.state
    changed = replace(
        cell,
        state=state,
        phase=event.phase or cell.phase,
        detail=event.detail,
        host=event.host or cell.host,
        last_sequence=event.sequence,
        started_at=cell.started_at
        if cell.started_at is not None or state in (CellState.PENDING, CellState.DONE)
        else event.at,
    )
    if event.kind is RunEventKind.CELL_FINISHED:
        return _finished(changed, event)
    if state is CellState.DONE and event.outcome is not None:
        # The machine's own end (or a cell that ended before it started); CELL_FINISHED follows.
        return replace(changed, outcome=event.outcome, reason=event.detail, finished_at=event.at)
    return changed


def _finished(cell: CellRecord, event: RunEvent) -> CellRecord:
    data: dict[str, Any] = event.data or {}
    outcome = event.outcome or (CellOutcome(data["outcome"]) if data.get("outcome") else cell.outcome)
    crash = data.get("crash")
    return replace(
        cell,
        state=CellState.DONE,
        outcome=outcome,
        reason=str(data.get("reason", event.detail)),
        crash_title=str(crash["title"]) if isinstance(crash, dict) and crash.get("title") else None,
        host=data.get("host") or cell.host,
        attempt=int(data.get("attempt", event.attempt)),
        timings=timings_from(data.get("timings")),
        started_at=data.get("started_at") if data.get("started_at") is not None else cell.started_at,
        finished_at=data.get("finished_at") if data.get("finished_at") is not None else event.at,
        observed=_outcome_or_none(data.get("observed")),
        expected_outcome=_outcome_or_none(data.get("expected_outcome")),
    )


def _outcome_or_none(raw: Any) -> CellOutcome | None:
    """An outcome named in an event's data; anything else (absent, unknown) as none."""
    try:
        return CellOutcome(raw) if raw else None
    except ValueError:
        return None


def timings_from(raw: Any) -> tuple[PhaseTimingRecord, ...]:
    """``[{"phase": ..., "seconds": ...}, ...]`` as records; anything else as none."""
    if not isinstance(raw, list):
        return ()
    return tuple(
        PhaseTimingRecord(str(item["phase"]), float(item["seconds"]))
        for item in raw
        if isinstance(item, dict) and "phase" in item and "seconds" in item
    )


def cell_from_result(cell: CellRecord, result: CellResult) -> CellRecord:
    """The cell record as the run's final result describes it (``finish_run``)."""
    return replace(
        cell,
        state=CellState.DONE,
        outcome=result.outcome,
        reason=result.reason,
        crash_title=result.crash_title,
        host=result.host or cell.host,
        attempt=result.attempt,
        timings=tuple(PhaseTimingRecord(t.phase, t.seconds) for t in result.timings),
        started_at=result.started_at if result.started_at is not None else cell.started_at,
        finished_at=result.finished_at if result.finished_at is not None else cell.finished_at,
        observed=result.observed,
        expected_outcome=result.expected_outcome,
    )


def run_from_result(run: RunRecord, result: RunResult) -> RunRecord:
    """The run record once the engine hands over its result: finished, whatever events were lost."""
    return replace(
        run,
        status=RunStatus.FINISHED,
        verdict=result.verdict,
        summary=result.summary,
        result=result.as_dict(),
        started_at=run.started_at if run.started_at is not None else result.started_at,
        finished_at=result.finished_at,
    )
