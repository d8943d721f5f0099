"""``/api/v1/runs/{run_id}/events``: the run's events as Server-Sent Events (see ``api.sse``).

Resumable: a client that reconnects with ``Last-Event-ID`` (browsers' EventSource does it by
itself) gets what it missed, each event once, in order; ``?after=N`` does the same for a first
connection. The status page's session cookie is accepted, since EventSource cannot send headers.
"""

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from api.deps import Reader, RunStoreDep, ServicesDep
from api.errors import ApiError, documented
from api.routers.runs import RunId, run_not_found
from api.sse import MEDIA_TYPE, follow, resume_point
from orchestrator.store import FieldProblem

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(401, 403, 422, 503))

_STREAM_DOC = {
    200: {
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "text/event-stream: `id: <sequence>`, `event: <kind>`, `data: <event JSON>`; "
        "a last `event: end` once the run is finished",
    },
    **documented(404),
}


@router.get(
    "/{run_id}/events", response_class=StreamingResponse, responses=_STREAM_DOC, summary="Follow a run"
)
async def run_events(
    run_id: RunId,
    runs: RunStoreDep,
    services: ServicesDep,
    _token: Reader,
    last_event_id: Annotated[
        str | None, Header(max_length=32, description="the last sequence seen (sent on reconnection)")
    ] = None,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="start after this sequence")] = None,
) -> StreamingResponse:
    start = resume_point(last_event_id, after)
    if start is None:
        raise ApiError(
            422,
            "Last-Event-ID must be an event's sequence number",
            [FieldProblem("header", "last-event-id", "not a sequence number")],
        )
    if runs.run_progress(run_id) is None:
        raise run_not_found(run_id)
    return StreamingResponse(
        follow(runs, services.wakeups, run_id, start),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
