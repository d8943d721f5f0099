"""Evidence of a run, per cell: list and download (viewer, or the status page's session).

Only evidence is served — never the run's scratch directory (its SSH key) — and only by plain
names inside the run (``api.evidence_files``): no traversal, no links. Text is served as
``text/plain``, JSON as JSON, screenshots as PNG, anything else as a download; every response
carries ``nosniff`` and a sandboxing Content-Security-Policy, so a guest's bytes are never
rendered as a page of ours.
"""

from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from api.deps import Reader, RunStoreDep
from api.errors import ApiError, documented
from api.evidence_files import (
    INLINE_TYPES,
    EvidenceEntry,
    cell_files,
    content_type_of,
    find_cell_file,
    find_run_file,
    run_files,
)
from api.routers.runs import CELL_ID_PATTERN, RunId, run_not_found
from api.schemas import EvidenceFile, EvidenceListing
from orchestrator.store import FieldProblem, RunRecord, SqlRunStore

router = APIRouter(prefix="/runs", tags=["evidence"], responses=documented(401, 403, 404, 422, 503))

CellId = Annotated[str, Path(pattern=CELL_ID_PATTERN, description="the cell's id")]
FileName = Annotated[str, Path(max_length=1000, description="the file's path inside the evidence")]
_FILE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file"}
}
API_PREFIX = "/api/v1"


def _run(runs: SqlRunStore, run_id: str) -> RunRecord:
    record = runs.get_run(run_id)
    if record is None:
        raise run_not_found(run_id)
    return record


def _cell_ids(record: RunRecord) -> set[str]:
    return {cell.cell_id for cell in record.cells}


def _not_found(field: str, message: str) -> ApiError:
    return ApiError(404, message, [FieldProblem("path", field, message)])


def evidence_url(run_id: str, entry: EvidenceEntry) -> str:
    name = quote(entry.name, safe="/")
    if entry.cell_id is None:
        return f"{API_PREFIX}/runs/{run_id}/files/{name}"
    return f"{API_PREFIX}/runs/{run_id}/cells/{quote(entry.cell_id, safe='')}/evidence/{name}"


def _listed(run_id: str, entries: list[EvidenceEntry]) -> EvidenceListing:
    return EvidenceListing(
        run_id=run_id,
        files=[
            EvidenceFile(
                cell_id=e.cell_id,
                name=e.name,
                size=e.size,
                content_type=e.content_type,
                url=evidence_url(run_id, e),
            )
            for e in entries
        ],
    )


def _served(path: FilePath, name: str) -> FileResponse:
    media_type = content_type_of(name)
    disposition = "inline" if media_type in INLINE_TYPES else "attachment"
    return FileResponse(
        path,
        media_type=media_type,
        content_disposition_type=disposition,
        filename=FilePath(name).name,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


@router.get("/{run_id}/evidence", response_model=EvidenceListing, summary="Every evidence file of a run")
def list_evidence(run_id: RunId, runs: RunStoreDep, _token: Reader) -> EvidenceListing:
    record = _run(runs, run_id)
    run_dir = FilePath(record.evidence_dir)
    entries = run_files(run_dir)
    for cell in record.cells:
        entries += cell_files(run_dir, cell.cell_id)
    return _listed(run_id, entries)


@router.get(
    "/{run_id}/cells/{cell_id}/evidence", response_model=EvidenceListing, summary="A cell's evidence files"
)
def list_cell_evidence(run_id: RunId, cell_id: CellId, runs: RunStoreDep, _token: Reader) -> EvidenceListing:
    record = _run(runs, run_id)
    if cell_id not in _cell_ids(record):
        raise _not_found("cell_id", f"run {run_id} has no cell {cell_id}")
    return _listed(run_id, cell_files(FilePath(record.evidence_dir), cell_id))


@router.get(
    "/{run_id}/cells/{cell_id}/evidence/{name:path}",
    response_class=FileResponse,
    responses=_FILE_DOC,
    summary="Download one evidence file of a cell (console.log is text/plain)",
)
def cell_evidence_file(
    run_id: RunId, cell_id: CellId, name: FileName, runs: RunStoreDep, _token: Reader
) -> FileResponse:
    record = _run(runs, run_id)
    if cell_id not in _cell_ids(record):
        raise _not_found("cell_id", f"run {run_id} has no cell {cell_id}")
    path = find_cell_file(FilePath(record.evidence_dir), cell_id, name)
    if path is None:
        raise _not_found("name", f"cell {cell_id} has no evidence file {name!r}")
    return _served(path, name)


@router.get(
    "/{run_id}/files/{name:path}",
    response_class=FileResponse,
    responses=_FILE_DOC,
    summary="Download run.json, events.jsonl or an attestation of a run",
)
def run_evidence_file(run_id: RunId, name: FileName, runs: RunStoreDep, _token: Reader) -> FileResponse:
    record = _run(runs, run_id)
    path = find_run_file(FilePath(record.evidence_dir), name)
    if path is None:
        raise _not_found("name", f"run {run_id} has no file {name!r}")
    return _served(path, name)
