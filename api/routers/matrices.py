"""``/api/v1/matrices``: add a matrix as YAML or JSON (submitter), list and get them (viewer)."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Limit, MatricesDep, Offset, ServicesDep, Submitter, Viewer
from api.errors import ApiError, UnsupportedMediaError, documented
from api.schemas import MatrixOut, MatrixSummary, Page
from orchestrator.errors import ConfigurationError
from orchestrator.store import FieldProblem, MatrixRecord, MatrixStore, RejectedInputError, TooLargeError

router = APIRouter(prefix="/matrices", tags=["matrices"], responses=documented(401, 403, 422, 503))

MAX_MATRIX_BYTES = 1 << 20
JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
MATRIX_SCHEMA_NAME = "MatrixSpec"

MatrixId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the matrix text")]
MatrixName = Annotated[
    str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="only matrices of this name")
]

_MATRIX_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the matrix, as YAML text or as a JSON object (the same fields)",
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{MATRIX_SCHEMA_NAME}"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _refused(field: str, message: str) -> RejectedInputError:
    return RejectedInputError("the matrix was refused", [FieldProblem("body", field, message)])


async def _read_text(request: Request) -> str:
    """The body as text, at most ``MAX_MATRIX_BYTES``; JSON bodies must be JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES | YAML_TYPES:
        raise UnsupportedMediaError(
            "the matrix was refused",
            [FieldProblem("header", "content-type", "send application/json or application/yaml")],
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MATRIX_BYTES:
            raise TooLargeError(
                "the matrix is too large",
                [FieldProblem("body", "", f"a matrix may have at most {MAX_MATRIX_BYTES} bytes")],
            )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refused("", f"not UTF-8 text: {exc}") from exc
    if media_type in JSON_TYPES:
        try:
            json.loads(text)
        except ValueError as exc:
            raise _refused("", f"not valid JSON: {exc}") from exc
    return text


def _matrix_out(matrices: MatrixStore, record: MatrixRecord) -> MatrixOut:
    try:
        spec = matrices.spec_of(record).model_dump(mode="json")
    except ConfigurationError:
        spec = None  # valid when stored; a stricter parser since then refuses it
    return MatrixOut.with_spec(record, spec)


@router.post(
    "",
    status_code=201,
    response_model=MatrixOut,
    summary="Add a matrix",
    responses={
        200: {"model": MatrixOut, "description": "the same text was stored already"},
        **documented(413, 415),
    },
    openapi_extra=_MATRIX_BODY,
)
async def create_matrix(request: Request, services: ServicesDep, token: Submitter) -> JSONResponse:
    """Validated by the same parser as ``testbed gate`` (every problem named by its field);
    stored under the sha256 of the text. 201 when new, 200 when the same text is stored already."""
    text = await _read_text(request)
    record, created = await run_in_threadpool(services.matrices.add, text, created_by=token.name)
    return JSONResponse(
        _matrix_out(services.matrices, record).model_dump(mode="json"),
        status_code=201 if created else 200,
        headers={"Location": f"{request.url.path}/{record.matrix_id}"},
    )


@router.get("", response_model=Page[MatrixSummary], summary="List stored matrices")
def list_matrices(
    matrices: MatricesDep, _token: Viewer, name: MatrixName = None, limit: Limit = 50, offset: Offset = 0
) -> Page[MatrixSummary]:
    records, total = matrices.list_matrices(name=name, limit=limit, offset=offset)
    return Page[MatrixSummary](
        items=[MatrixSummary.of(r) for r in records], total=total, limit=limit, offset=offset
    )


@router.get("/{matrix_id}", response_model=MatrixOut, summary="One stored matrix", responses=documented(404))
def get_matrix(matrix_id: MatrixId, matrices: MatricesDep, _token: Viewer) -> MatrixOut:
    record = matrices.get(matrix_id)
    if record is None:
        raise ApiError(404, f"no matrix {matrix_id}", [FieldProblem("path", "matrix_id", "no such matrix")])
    return _matrix_out(matrices, record)
