"""Closing a run nobody can finish any more: pure, no I/O.

A restart finds runs whose process died. Most are resumed by the engine; one that cannot be (its
candidate or matrix is gone, its images were removed) is closed here instead: the cells that had
finished keep their results, every other cell ends ``infra_error`` with the reason, and the run
gets its verdict from the same rules as any other (``core.verdict.decide``). The events continue
the run's numbering, so a follower of the run's stream sees it end like any run.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.core.outcomes import CellOutcome, CellState
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.core.verdict import decide
from orchestrator.store.records import RunRecord


def planned_cells(plan: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(cell id, image name, kernel) of every planned cell, in the plan's order."""
    cells = plan.get("cells")
    if not isinstance(cells, list):
        return []
    planned = []
    for cell in cells:
        if not isinstance(cell, Mapping) or not cell.get("cell_id"):
            continue
        image = cell.get("image")
        image = image if isinstance(image, Mapping) else {}
        planned.append((str(cell["cell_id"]), str(image.get("name", "")), str(image.get("kernel", ""))))
    return planned


def close_interrupted(
    run: RunRecord, finished: Sequence[CellResult], reason: str, at: float
) -> tuple[list[RunEvent], RunResult]:
    """The events that end ``run`` (after its ``last_sequence``) and the result they amount to."""
    results = {result.cell_id: result for result in finished}
    attempts = {cell.cell_id: cell.attempt for cell in run.cells}
    hosts = {cell.cell_id: cell.host for cell in run.cells}
    cell_ids = [cell_id for cell_id, _, _ in planned_cells(run.plan)]
    cell_ids += [cell.cell_id for cell in run.cells if cell.cell_id not in cell_ids]
    images = {cell_id: (image, kernel) for cell_id, image, kernel in planned_cells(run.plan)}
    events: list[RunEvent] = []

    def emit(kind: RunEventKind, **fields: Any) -> None:
        events.append(
            RunEvent(
                run_id=run.run_id, sequence=run.last_sequence + len(events) + 1, at=at, kind=kind, **fields
            )
        )

    cells = []
    for cell_id in cell_ids:
        result = results.get(cell_id)
        if result is None:
            image, kernel = images.get(cell_id, ("", ""))
            result = CellResult(
                cell_id,
                image,
                kernel,
                hosts.get(cell_id),
                CellOutcome.INFRA_ERROR,
                reason,
                attempt=attempts.get(cell_id, 1),
                finished_at=at,
            )
            emit(
                RunEventKind.CELL_FINISHED,
                cell_id=cell_id,
                state=CellState.DONE,
                phase=str(result.outcome),
                outcome=result.outcome,
                detail=reason,
                host=result.host,
                attempt=result.attempt,
                data=result.as_dict(),
            )
        cells.append(result)
    verdict = decide((cell.cell_id, cell.outcome) for cell in cells)
    emit(
        RunEventKind.RUN_FINISHED,
        verdict=verdict.verdict,
        detail=verdict.summary,
        data={"verdict": str(verdict.verdict), "summary": verdict.summary},
    )
    plan = run.plan
    candidate = plan.get("candidate_name", "")
    run_result = RunResult(
        run_id=run.run_id,
        matrix_name=str(plan.get("matrix_name", "")),
        candidate_name=str(candidate),
        candidate_version=str(plan.get("candidate_version", "")),
        artifact_digests=dict(plan.get("artifact_digests") or {}),
        verdict=verdict.verdict,
        summary=verdict.summary,
        cells=cells,
        evidence_dir=run.evidence_dir,
        started_at=run.started_at if run.started_at is not None else run.created_at,
        finished_at=at,
        matrix_sha256=str(plan.get("matrix_sha256", "")),
        matrix_source=str(plan.get("matrix_source", "")),
    )
    return events, run_result
