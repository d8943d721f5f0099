"""``/api/v1/runs``: start a run (submitter), list and read runs (viewer), cancel one (submitter).

Starting a run validates everything first (the candidate, the matrix, the images, the plan): bad
input is a 422 naming the field, and nothing starts. Then the run is accepted at once — 202 with
its record — and runs in the background; follow it with ``GET /runs/{id}/events`` (SSE).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Limit, Offset, Reader, RunServiceDep, RunStoreDep, Submitter
from api.errors import ApiError, documented
from api.run_service import EngineUnavailableError, RunConflictError, RunNotFoundError, RunRequest
from api.schemas import Page as PageOf
from api.schemas import RunCancel, RunCreate, RunOut, RunSummary
from orchestrator.core.outcomes import RunVerdict
from orchestrator.store import FieldProblem, RunStatus

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(400, 401, 403, 422, 503))

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
CELL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+@~-]{0,199}$"
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="the run's id")]
Digest = Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")]


def run_not_found(run_id: str) -> ApiError:
    return ApiError(404, f"no run {run_id}", [FieldProblem("path", "run_id", "no such run")])


@router.post(
    "",
    status_code=202,
    response_model=RunOut,
    summary="Start a run",
)
async def create_run(
    request: Request, body: RunCreate, runs: RunStoreDep, service: RunServiceDep, token: Submitter
) -> JSONResponse:
    """Accept a run of a stored candidate against a stored matrix (or a matrix text, stored first).
    202 with the run (queued); ``Location`` names it. 503 when the testbed cannot run anything now
    (its libvirt hosts could not be opened), with the reason."""
    run_request = RunRequest(
        candidate_id=body.candidate_id,
        matrix_id=body.matrix_id,
        matrix_text=body.matrix,
        priority=body.priority,
    )
    try:
        run_id = await run_in_threadpool(service.create, run_request, submitted_by=token.name)
    except EngineUnavailableError as exc:
        raise ApiError(503, str(exc)) from exc
    record = await run_in_threadpool(runs.get_run, run_id)
    if record is None:  # accepted a moment ago: only a database emptied under us gets here
        raise run_not_found(run_id)
    return JSONResponse(
        RunOut.of(record).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"{request.url.path}/{run_id}"},
    )


@router.get("", response_model=PageOf[RunSummary], summary="List runs, newest first")
def list_runs(
    *,
    runs: RunStoreDep,
    _token: Reader,
    status: RunStatus | None = None,
    verdict: RunVerdict | None = None,
    candidate_id: Digest = None,
    matrix_id: Digest = None,
    submitted_by: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOf[RunSummary]:
    records, total = runs.list_runs(
        status=status,
        verdict=verdict,
        candidate_id=candidate_id,
        matrix_id=matrix_id,
        submitted_by=submitted_by,
        limit=limit,
        offset=offset,
    )
    return PageOf[RunSummary](
        items=[RunSummary.of(record) for record in records], total=total, limit=limit, offset=offset
    )


@router.get("/{run_id}", response_model=RunOut, summary="One run with every cell", responses=documented(404))
def get_run(run_id: RunId, runs: RunStoreDep, _token: Reader) -> RunOut:
    record = runs.get_run(run_id)
    if record is None:
        raise run_not_found(run_id)
    return RunOut.of(record)


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=RunOut,
    summary="Cancel a run",
    responses=documented(404, 409),
)
def cancel_run(
    run_id: RunId,
    runs: RunStoreDep,
    service: RunServiceDep,
    _token: Submitter,
    body: Annotated[RunCancel | None, Body()] = None,
) -> RunOut:
    """Cells waiting for a slot end ``canceled`` at once; running ones stop, keep their evidence
    and tear their domains down. 202: the run finishes shortly (inconclusive, unless a cell had
    already failed). 409 when it has finished already."""
    try:
        service.cancel(run_id, (body or RunCancel()).reason)
    except RunNotFoundError as exc:
        raise run_not_found(run_id) from exc
    except RunConflictError as exc:
        raise ApiError(409, str(exc), [FieldProblem("path", "run_id", str(exc))]) from exc
    record = runs.get_run(run_id)
    if record is None:
        raise run_not_found(run_id)
    return RunOut.of(record)


@router.get(
    "/{run_id}/result",
    response_model=dict[str, Any],
    summary="A finished run's result: the verdict bound to the artifact digests (run.json's shape)",
    responses=documented(404, 409),
)
def run_result(run_id: RunId, runs: RunStoreDep, _token: Reader) -> dict[str, Any]:
    """Every cell's result (outcome, reason, crash report, timings), as ``testbed gate --json``
    prints it; 409 until the run has finished."""
    record = runs.get_run(run_id)
    if record is None:
        raise run_not_found(run_id)
    if record.status is not RunStatus.FINISHED or record.result is None:
        raise ApiError(
            409, f"run {run_id} has not finished yet", [FieldProblem("path", "run_id", "not finished")]
        )
    return dict(record.result)
