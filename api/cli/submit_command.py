"""``testbed submit``: a CI job's gate through the service — pack and upload the candidate, add the
matrix, start the run, follow it, and exit as ``testbed gate`` does.

Exit codes: 0 passed, 1 failed (a candidate-caused failure in any cell), 2 inconclusive or the
testbed's own trouble (including a server that cannot be reached or answers 5xx), 3 bad input
(the candidate or matrix is refused here, or the server answers 4xx: the message names the field).

Following a run: its Server-Sent Events, resumed with ``Last-Event-ID`` whenever the connection
drops (each event is seen once); the verdict is then read from the run's result, and the JUnit
report built from it with ``api.cli.junit`` (one test case per cell, failure message = crash title).
"""

import contextlib
import json
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from rich.text import Text

from api.cli.common import JsonOption, console, errors_as_exit_codes
from api.cli.junit import junit_xml
from orchestrator.candidate import MANIFEST_NAME, load_candidate
from orchestrator.core.outcomes import RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.core.sanitize import one_line
from orchestrator.core.verdict import EXIT_CODES
from orchestrator.errors import ConfigurationError, InfrastructureError

SIGNATURE_NAME = MANIFEST_NAME + ".dsse"
RECONNECT_BUDGET_S = 300.0
"""How long the run's stream may stay unreachable before the job gives up (exit 2)."""


# -- pure helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseMessage:
    event: str
    data: str
    id: str | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Server-Sent Events from a stream's lines (the WHATWG rules we need: fields, comments, blank
    lines ending a message)."""
    event, last_id = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseMessage(event, "\n".join(data), last_id)
            event, last_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value


def _epoch(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def run_result_from(data: Mapping[str, Any], evidence_url: str = "") -> RunResult:
    """A run's result as ``GET /runs/{id}/result`` returns it (run.json's shape), with each cell's
    evidence pointing at the service's page of the cell rather than at a server path."""
    candidate = data.get("candidate") or {}
    cells = []
    for raw in data.get("cells") or []:
        cell = CellResult.from_dict(dict(raw))
        if evidence_url:
            cell.evidence_dir = f"{evidence_url}/cells/{cell.cell_id}"
        cells.append(cell)
    return RunResult(
        run_id=str(data["run_id"]),
        matrix_name=str(data.get("matrix") or ""),
        candidate_name=str(candidate.get("name") or ""),
        candidate_version=str(candidate.get("version") or ""),
        artifact_digests=dict(candidate.get("artifacts") or {}),
        verdict=RunVerdict(data["verdict"]),
        summary=str(data.get("summary") or ""),
        cells=cells,
        evidence_dir=evidence_url or str(data.get("evidence_dir") or ""),
        started_at=_epoch(data.get("started_at")) or 0.0,
        finished_at=_epoch(data.get("finished_at")) or 0.0,
        matrix_sha256=str(data.get("matrix_sha256") or ""),
        matrix_source=str(data.get("matrix_source") or ""),
    )


def pack_candidate(directory: Path, into: IO[bytes]) -> str:
    """candidate.yaml, its signature if any, and every artifact it lists, as a tar.gz; checked here
    first (a broken candidate is bad input before anything is sent). The candidate's name."""
    candidate = load_candidate(directory)
    root = candidate.root
    names = [MANIFEST_NAME] + ([SIGNATURE_NAME] if (root / SIGNATURE_NAME).is_file() else [])
    names += [
        candidate.path_of(artifact).relative_to(root).as_posix() for artifact in candidate.manifest.artifacts
    ]
    with tarfile.open(fileobj=into, mode="w:gz") as archive:
        for name in dict.fromkeys(names):
            info = archive.gettarinfo(str(root / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with (root / name).open("rb") as stream:
                archive.addfile(info, stream)
    return f"{candidate.name} {candidate.version}"


# -- the service, over HTTP ----------------------------------------------------------------------


class ServiceClient:
    """The calls ``testbed submit`` makes; HTTP trouble becomes the testbed's own errors."""

    def __init__(
        self,
        server: str,
        token: str,
        transport: httpx.BaseTransport | None = None,
        retry_delay_s: float = 2.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._retry_delay_s = retry_delay_s
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise InfrastructureError(
                f"the testbed service at {self.server} cannot be reached: {exc}"
            ) from exc
        return _answer(response)

    def upload(self, bundle: IO[bytes]) -> dict[str, Any]:
        return self._call(
            "POST", "/api/v1/candidates", files={"bundle": ("candidate.tar.gz", bundle, "application/gzip")}
        )

    def add_matrix(self, text: str) -> dict[str, Any]:
        return self._call(
            "POST", "/api/v1/matrices", content=text.encode(), headers={"Content-Type": "application/yaml"}
        )

    def start_run(self, candidate_id: str, matrix_id: str, priority: int) -> dict[str, Any]:
        body = {"candidate_id": candidate_id, "matrix_id": matrix_id, "priority": priority}
        return self._call("POST", "/api/v1/runs", json=body)

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/runs/{run_id}")

    def result(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/runs/{run_id}/result")

    def events(self, run_id: str, budget_s: float = RECONNECT_BUDGET_S) -> Iterator[RunEvent]:
        """Every event of the run, once, in order, until it ends; reconnecting (with the last id)
        while the service is reachable again within ``budget_s``."""
        last, lost_since = 0, None
        while True:
            try:
                with self._http.stream(
                    "GET",
                    f"/api/v1/runs/{run_id}/events",
                    headers={"Last-Event-ID": str(last), "Accept": "text/event-stream"},
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        _answer(response)
                    lost_since = None
                    for message in parse_sse(response.iter_lines()):
                        if message.event == "end":
                            return
                        event = RunEvent.from_dict(json.loads(message.data))
                        last = event.sequence
                        yield event
            except httpx.HTTPError as exc:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > budget_s:
                    raise InfrastructureError(
                        f"lost the run's event stream at {self.server} for {budget_s:g}s: {exc}"
                    ) from exc
                time.sleep(self._retry_delay_s)  # the service restarts, or the network hiccuped


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        data: dict[str, Any] = response.json()
        return data
    try:
        body = response.json()
        message = str(body.get("message") or response.reason_phrase)
        problems = [
            f"  {p.get('location')}{'.' + p['field'] if p.get('field') else ''}: {p.get('message')}"
            for p in body.get("problems") or []
        ]
    except ValueError:
        message, problems = response.text[:300] or response.reason_phrase, []
    text = "\n".join([f"the service answered {response.status_code}: {message}", *problems])
    if 400 <= response.status_code < 500:
        raise ConfigurationError(text)
    raise InfrastructureError(text)


# -- the command ----------------------------------------------------------------------------------


def _progress(event: RunEvent, started: float) -> Text | None:
    if event.kind not in (RunEventKind.CELL_CHANGED, RunEventKind.CELL_FINISHED) or event.cell_id is None:
        return None
    outcome = f" -> {event.outcome}" if event.outcome else ""
    cell, phase = one_line(event.cell_id, 80), one_line(event.phase, 160)  # guest-influenced text
    return Text(f"[{time.monotonic() - started:7.1f}s] {cell:<28} {event.state or '':<12} {phase}{outcome}")


def submit(
    *,
    server: Annotated[str, typer.Option(help="The service, e.g. http://testbed.example:8080.")],
    token: Annotated[
        str, typer.Option(help="An API token with the submitter role.", envvar="TESTBED_API_TOKEN")
    ],
    candidate: Annotated[Path, typer.Option(help="Candidate directory (or its candidate.yaml).")],
    matrix: Annotated[Path, typer.Option(help="Matrix YAML file.")],
    priority: Annotated[int, typer.Option(help="Higher gets host slots first.", min=-100, max=100)] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run and exit with its verdict.")] = False,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here (with --wait).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Submit a candidate and a matrix to the testbed service; with --wait, exit with the verdict."""
    out = console(stderr=True)
    with errors_as_exit_codes():
        try:
            text = matrix.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"matrix: cannot read {matrix}: {exc}") from exc
        client = ServiceClient(server, token)
        with contextlib.closing(client), tempfile.TemporaryFile() as bundle:
            described = pack_candidate(candidate, bundle)
            bundle.seek(0)
            uploaded = client.upload(bundle)
            matrix_id = client.add_matrix(text)["id"]
            run = client.start_run(uploaded["id"], matrix_id, priority)
            page = f"{client.server}/runs/{run['id']}"
            out.print(Text(f"submitted {described} as run {run['id']} ({len(run['cells'])} cell(s)): {page}"))
            if not wait:
                if json_output:
                    sys.stdout.write(json.dumps(run, indent=2) + "\n")
                return
            started = time.monotonic()
            for event in client.events(run["id"]):
                line = _progress(event, started)
                if line is not None:
                    out.print(line, highlight=False)
            result = run_result_from(client.result(run["id"]), page)
    if junit is not None:
        junit.write_text(junit_xml(result), encoding="utf-8")
    if json_output:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    out.print(Text(f"verdict: {result.verdict} — {one_line(result.summary)}"))
    out.print(Text(f"run page: {page}"))
    raise typer.Exit(EXIT_CODES[result.verdict])


__all__ = ["ServiceClient", "pack_candidate", "parse_sse", "run_result_from", "submit"]
