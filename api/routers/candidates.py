"""``/api/v1/candidates``: upload a bundle (submitter), list and get stored candidates (viewer)."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CandidatesDep, Limit, Offset, ServicesDep, Submitter, Viewer
from api.errors import ApiError, documented
from api.schemas import CandidateOut, Page
from api.uploads import BUNDLE_FIELD, receive_bundle
from orchestrator.store import FieldProblem

router = APIRouter(prefix="/candidates", tags=["candidates"], responses=documented(401, 403, 422, 503))

CandidateId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the canonical manifest")]
CandidateName = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=200, description="only this name")
]

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [BUNDLE_FIELD],
                    "properties": {
                        BUNDLE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "tar.gz holding candidate.yaml and every artifact it lists",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=CandidateOut,
    summary="Upload a candidate bundle",
    responses={
        200: {"model": CandidateOut, "description": "the same candidate was stored already"},
        **documented(413, 415),
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_candidate(request: Request, services: ServicesDep, token: Submitter) -> JSONResponse:
    """Stream the bundle to disk (up to the configured limit), check every member, verify the
    manifest and each artifact's sha256, and store it under its id. 201 when new, 200 when the
    same candidate is stored already; nothing stored changes on a refused upload."""
    bundle = await receive_bundle(
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
        services.candidates.incoming_dir,
        services.upload_limit_bytes,
    )
    try:
        record, created = await run_in_threadpool(
            services.candidates.add_bundle, bundle, created_by=token.name
        )
    finally:
        bundle.unlink(missing_ok=True)
    return JSONResponse(
        CandidateOut.of(record).model_dump(mode="json"),
        status_code=201 if created else 200,
        headers={"Location": f"{request.url.path}/{record.candidate_id}"},
    )


@router.get("", response_model=Page[CandidateOut], summary="List stored candidates")
def list_candidates(
    candidates: CandidatesDep,
    _token: Viewer,
    name: CandidateName = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[CandidateOut]:
    records, total = candidates.list_candidates(name=name, limit=limit, offset=offset)
    return Page[CandidateOut](
        items=[CandidateOut.of(r) for r in records], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{candidate_id}", response_model=CandidateOut, summary="One stored candidate", responses=documented(404)
)
def get_candidate(candidate_id: CandidateId, candidates: CandidatesDep, _token: Viewer) -> CandidateOut:
    record = candidates.get(candidate_id)
    if record is None:
        raise ApiError(
            404, f"no candidate {candidate_id}", [FieldProblem("path", "candidate_id", "no such candidate")]
        )
    return CandidateOut.of(record)
