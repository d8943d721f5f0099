"""Starting and following runs over HTTP, as a client of the service does (no sleeping: a run is
waited for by reading its event stream until the service says it ended)."""

import json
import time
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


def messages_until_end(client: httpx.Client, run_id: str, deadline_s: float = 2400.0) -> Iterator[SseMessage]:
    """Every message until the run's ``end``, reconnecting after the last event as a real client
    does when a stream closes first (the service caps a stream's life; a run may wait long for a
    host slot)."""
    last: str | None = None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": last} if last is not None else None
        for message in stream(client, run_id, headers):
            yield message
            if message.event == "end":
                return
            last = message.id if message.id is not None else last
    raise AssertionError(f"run {run_id} did not end within {deadline_s:g}s")


def follow_to_end(client: httpx.Client, run_id: str, deadline_s: float = 2400.0) -> list[SseMessage]:
    """Every message until the run's ``end`` (see messages_until_end)."""
    return list(messages_until_end(client, run_id, deadline_s))


def events_of(messages: list[SseMessage]) -> list[dict]:
    return [json.loads(m.data) for m in messages if m.event != "end"]


def finish(client: httpx.Client, run_id: str) -> dict:
    """The run once it has finished (its stream followed to the end)."""
    follow_to_end(client, run_id)
    run: dict = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "finished", run
    return run
