"""A run's events as Server-Sent Events, resumable with ``Last-Event-ID``.

Each event is sent as ``id: <sequence>``, ``event: <kind>`` (run_started, cell_changed, cell_note,
cell_finished, run_finished) and ``data:`` its JSON (``RunEvent.as_dict``, one line). A client that
reconnects with the last id it saw gets exactly what it missed, in order, each event once. When
the run is finished and everything was sent, a last ``event: end`` (without an id) carries the
run's status and verdict and the stream closes. Comments (``: keep-alive``) keep proxies from
timing out an idle stream; a stream also ends after ``max_s`` (the client reconnects and resumes),
so that a server shutting down never waits long for its streams.
"""

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from starlette.concurrency import run_in_threadpool

from api.live import RunWakeups
from orchestrator.core.outcomes import RunVerdict
from orchestrator.core.records import RunEvent
from orchestrator.store import RunStatus, SqlRunStore

MEDIA_TYPE = "text/event-stream"
RETRY_MS = 2000


RESULT_POLL_S = 0.1  # the first wait for a finished run's result (see follow), doubling up to poll_s


@dataclass(frozen=True)
class StreamTiming:
    """How a stream paces itself (seconds)."""

    poll_s: float = 1.0  # read the store at least this often (events from other processes)
    keepalive_s: float = 15.0
    max_s: float = 300.0
    page: int = 500  # events read per query


def format_event(event: RunEvent) -> str:
    # json.dumps escapes newlines and control characters: the data is always one line.
    data = json.dumps(event.as_dict(), separators=(",", ":"))
    return f"id: {event.sequence}\nevent: {event.kind}\ndata: {data}\n\n"


def format_end(status: RunStatus, verdict: RunVerdict | None) -> str:
    body = {"status": str(status), "verdict": str(verdict) if verdict else None}
    data = json.dumps(body, separators=(",", ":"))
    return f"event: end\ndata: {data}\n\n"


def resume_point(last_event_id: str | None, after: int | None) -> int | None:
    """Where to start: after ``Last-Event-ID`` (what a reconnecting client sends), else after the
    ``after`` query; None when the header is not a sequence number."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        return int(text) if text.isdigit() and len(text) < 12 else None
    return after or 0


async def follow(
    runs: SqlRunStore,
    wakeups: RunWakeups,
    run_id: str,
    after: int,
    timing: StreamTiming = StreamTiming(),
) -> AsyncIterator[str]:
    """The stream of ``run_id`` after sequence ``after``, until the run is finished (or ``max_s``)."""
    started = quiet_since = time.monotonic()
    result_wait = RESULT_POLL_S
    yield f"retry: {RETRY_MS}\n\n"
    with wakeups.listen(run_id) as news:
        while time.monotonic() - started < timing.max_s:
            news.clear()  # before reading: news arriving while we read wakes the next wait
            events = await run_in_threadpool(runs.events_after, run_id, after, timing.page)
            for event in events:
                yield format_event(event)
                after = event.sequence
            if events:
                quiet_since = time.monotonic()
                continue  # more may have come meanwhile, or the end: look again before sleeping
            progress = await run_in_threadpool(runs.run_progress, run_id)
            if progress is None:
                return  # the run was deleted under us
            status, last_sequence, verdict = progress
            # "end" promises the result is readable: run_finished is stored a moment before the
            # engine stores the result (CI: `testbed submit --wait` read 409 right after "end").
            caught_up = status is RunStatus.FINISHED and after >= last_sequence
            if caught_up and await run_in_threadpool(runs.has_result, run_id):
                yield format_end(status, verdict)
                return
            if time.monotonic() - quiet_since >= timing.keepalive_s:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            # The result follows run_finished within moments and no news announces it: look again
            # soon, then less often (an engine that died in between leaves it missing for good).
            wait = min(result_wait, timing.poll_s) if caught_up else timing.poll_s
            if caught_up:
                result_wait *= 2
            with anyio.move_on_after(wait):
                await news.wait()
