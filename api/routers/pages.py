"""The status page: server-rendered HTML (Jinja2, autoescaped), a little plain JS for live updates.

- ``/login``: a token opens a session (an HttpOnly cookie holding the token; evidence is not
  public); ``/logout`` ends it;
- ``/runs``: runs with verdict badges, filtered by status, verdict and submitter;
- ``/runs/{id}``: the matrix grid (rows: images; columns: the other dimensions), each cell
  updated over SSE (``static/run.js``) with its state, phase and elapsed time, without a reload;
- ``/runs/{id}/cells/{cell}``: the crash title, the console tail with the crash lines marked,
  phase timings, evidence downloads, and screenshots where the guest has a screen.

Guest text is untrusted: it is made terminal-safe (``core.sanitize``) and autoescaped; the pages
carry a Content-Security-Policy that allows no inline script at all.
"""

import json
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.deps import SESSION_COOKIE, ServicesDep
from api.evidence_files import cell_files, run_files
from api.routers.evidence import evidence_url
from api.run_views import console_tail, coordinates_of, crash_summary, format_seconds, matrix_grid
from api.services import Services
from orchestrator.core.outcomes import CANDIDATE_FAILURES, RunVerdict
from orchestrator.store import CellRecord, RunRecord, RunStatus, TokenRecord

PACKAGE_DIR = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
SESSION_MAX_AGE_S = 12 * 3600
CONSOLE_TAIL_BYTES = 256 * 1024
PAGE_SIZE = 50
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)

templates = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["seconds"] = format_seconds
templates.filters["when"] = lambda at: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + "Z" if at else ""


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = templates.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def _local(target: str | None) -> str:
    """Where to go after logging in: only a path of this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    return target


def _viewer(request: Request, services: Services) -> TokenRecord | None:
    secret = request.cookies.get(SESSION_COOKIE)
    return services.tokens.verify(secret) if secret else None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


# -- session -------------------------------------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=303)


@router.get("/login")
def login_form(next_page: Annotated[str | None, Query(alias="next", max_length=2000)] = None) -> HTMLResponse:
    return _page("login.html", next=_local(next_page), problem="")


@router.post("/login")
def login(
    request: Request,
    services: ServicesDep,
    token: Annotated[str, Form(max_length=200)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "/runs",
) -> Response:
    record = services.tokens.verify(token.strip()) if token.strip() else None
    if record is None:
        return _page("login.html", 401, next=_local(next_page), problem="That token is unknown or revoked.")
    response = RedirectResponse(_local(next_page), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- runs ----------------------------------------------------------------------------------------


@router.get("/runs")
def runs_page(
    *,
    request: Request,
    services: ServicesDep,
    status: str = "",
    verdict: str = "",
    submitted_by: Annotated[str, Query(max_length=200)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    viewer = _viewer(request, services)
    if viewer is None:
        return _to_login(request)
    chosen_status = RunStatus(status) if status in set(RunStatus) else None
    chosen_verdict = RunVerdict(verdict) if verdict in set(RunVerdict) else None
    records, total = services.runs.list_runs(
        status=chosen_status,
        verdict=chosen_verdict,
        submitted_by=submitted_by or None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    query = {
        key: str(value)
        for key, value in (
            ("status", chosen_status),
            ("verdict", chosen_verdict),
            ("submitted_by", submitted_by),
        )
        if value
    }
    return _page(
        "runs.html",
        viewer=viewer,
        runs=records,
        total=total,
        filters=query,
        statuses=list(RunStatus),
        verdicts=list(RunVerdict),
        previous=urlencode({**query, "offset": max(0, offset - PAGE_SIZE)}) if offset else None,
        following=urlencode({**query, "offset": offset + PAGE_SIZE}) if offset + PAGE_SIZE < total else None,
    )


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request, services: ServicesDep) -> Response:
    viewer = _viewer(request, services)
    if viewer is None:
        return _to_login(request)
    record = services.runs.get_run(run_id)
    if record is None:
        return _page("missing.html", 404, viewer=viewer, what=f"run {run_id}")
    cells = {cell.cell_id: cell for cell in record.cells}
    return _page(
        "run.html",
        viewer=viewer,
        run=record,
        grid=matrix_grid(record.plan, record.cells),
        cells=cells,
        live_url=f"/api/v1/runs/{quote(run_id, safe='')}/events?after={record.last_sequence}",
        now=time.time(),
        run_files=[(entry, evidence_url(run_id, entry)) for entry in run_files(Path(record.evidence_dir))],
        failures=CANDIDATE_FAILURES,
    )


@router.get("/runs/{run_id}/cells/{cell_id}")
def cell_page(run_id: str, cell_id: str, request: Request, services: ServicesDep) -> Response:
    viewer = _viewer(request, services)
    if viewer is None:
        return _to_login(request)
    record = services.runs.get_run(run_id)
    cell = next((c for c in record.cells if c.cell_id == cell_id), None) if record else None
    if record is None or cell is None:
        return _page("missing.html", 404, viewer=viewer, what=f"cell {cell_id} of run {run_id}")
    run_dir = Path(record.evidence_dir)
    evidence_dir = _attempt_dir(run_dir, cell)
    crash = _read_json(evidence_dir / "crash.json")
    files = cell_files(run_dir, cell_id)
    coordinates = coordinates_of(record.plan, [cell_id])[cell_id]
    return _page(
        "cell.html",
        viewer=viewer,
        run=record,
        cell=cell,
        coordinates=coordinates,
        crash=crash_summary(crash),
        console=console_tail(_tail(evidence_dir / "console.log"), str((crash or {}).get("excerpt") or "")),
        files=[(entry, evidence_url(run_id, entry)) for entry in files],
        screenshots=[evidence_url(run_id, e) for e in files if e.content_type == "image/png"],
        os_family=_os_family(record, cell_id),
        failures=CANDIDATE_FAILURES,
    )


def _attempt_dir(run_dir: Path, cell: CellRecord) -> Path:
    """Where the cell's latest attempt keeps its evidence (retries under attempt-<n>/)."""
    base = run_dir / "cells" / cell.cell_id
    return base if cell.attempt <= 1 else base / f"attempt-{cell.attempt}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path) -> str:
    """The end of a console log, whole lines only (a guest may have printed megabytes)."""
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(max(0, size - CONSOLE_TAIL_BYTES))
            data = stream.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text.split("\n", 1)[1] if size > CONSOLE_TAIL_BYTES and "\n" in text else text


def _os_family(record: RunRecord, cell_id: str) -> str:
    for cell in record.plan.get("cells") or []:
        if isinstance(cell, dict) and cell.get("cell_id") == cell_id and isinstance(cell.get("image"), dict):
            return str(cell["image"].get("os_family") or "")
    return ""
