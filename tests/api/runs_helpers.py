"""Starting and following runs over HTTP, as a client of the service does (no sleeping: a run is
waited for by reading its event stream until the service says it ended)."""

import json
from collections.abc import Iterator

import httpx

from api.cli.submit_command import SseMessage, parse_sse
from tests.api.bundles import good_bundle

PASSING = "name: sim-pass\nimages: [sim-linux]\nreboots: 1\ntimeouts: {soak: 30}\n"
MIXED = "name: sim-mixed\nimages: [sim-linux, sim-linux-crash]\nreboots: 1\ntimeouts: {soak: 30}\n"
SLOW = "name: sim-slow\nimages: [sim-linux-slow]\nreboots: 3\ntimeouts: {soak: 30}\n"
SLOW_AND_QUICK = (
    "name: sim-slow-quick\nimages: [sim-linux-slow, sim-linux]\nreboots: 3\ntimeouts: {soak: 30}\n"
)
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def upload_candidate(client: httpx.Client, version: str = "7.1.0") -> str:
    response = client.post(
        "/api/v1/candidates", files={"bundle": ("c.tar.gz", good_bundle(version), "application/gzip")}
    )
    assert response.status_code in (200, 201), response.text
    candidate_id: str = response.json()["id"]
    return candidate_id


def start_run(client: httpx.Client, candidate_id: str, matrix: str = PASSING, **fields: object) -> dict:
    response = client.post("/api/v1/runs", json={"candidate_id": candidate_id, "matrix": matrix, **fields})
    assert response.status_code == 202, response.text
    run: dict = response.json()
    return run


def stream(
    client: httpx.Client,
    run_id: str,
    headers: dict[str, str] | None = None,
    params: dict[str, int] | None = None,
) -> Iterator[SseMessage]:
    """The run's SSE messages as they come, until the stream closes."""
    with client.stream(
        "GET", f"/api/v1/runs/{run_id}/events", headers=headers or {}, params=params, timeout=STREAM_TIMEOUT
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield from parse_sse(response.iter_lines())


def follow(
    client: httpx.Client,
    run_id: str,
    headers: dict[str, str] | None = None,
    params: dict[str, int] | None = None,
) -> list[SseMessage]:
    """Every message until the run's ``end``."""
    messages = []
    for message in stream(client, run_id, headers, params):
        messages.append(message)
        if message.event == "end":
            break
    return messages


def events_of(messages: list[SseMessage]) -> list[dict]:
    return [json.loads(m.data) for m in messages if m.event != "end"]


def finish(client: httpx.Client, run_id: str) -> dict:
    """The run once it has finished (its stream followed to the end)."""
    follow(client, run_id)
    run: dict = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "finished", run
    return run
