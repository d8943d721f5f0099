"""Run events as Server-Sent Events: the wire format, where a reconnecting client resumes, and the
stream itself over a real (SQLite) store — replay, live events woken by the bus, the end."""

import asyncio
import json
import threading

import pytest

from api.cli.submit_command import SseMessage, parse_sse
from api.live import EventBridge, RunWakeups
from api.sse import StreamTiming, follow, format_end, format_event, resume_point
from orchestrator.core.outcomes import CellState, RunVerdict
from orchestrator.core.records import RunEvent, RunEventKind, RunResult
from orchestrator.engine.event_bus import EventBus
from orchestrator.store import RunStatus, SqlRunStore, open_database

pytestmark = pytest.mark.unit


def event(sequence: int, kind: RunEventKind = RunEventKind.CELL_CHANGED, **fields) -> RunEvent:
    return RunEvent("r", sequence, 1000.0 + sequence, kind, **fields)


def test_an_event_is_one_message_with_its_sequence_as_id_whatever_the_guest_printed():
    text = format_event(event(7, cell_id="n", state=CellState.BOOTING, detail="line one\nline two\x1b[2J\r"))

    lines = text.split("\n")
    assert lines[:2] == ["id: 7", "event: cell_changed"]
    assert lines[2].startswith("data: {")
    assert lines[3:] == ["", ""]  # one data line, then the blank line that ends the message
    assert json.loads(lines[2].removeprefix("data: "))["detail"] == "line one\nline two\x1b[2J\r"


def test_the_end_has_no_id_so_a_reconnection_never_skips_past_it():
    assert format_end(RunStatus.FINISHED, RunVerdict.FAILED) == (
        'event: end\ndata: {"status":"finished","verdict":"failed"}\n\n'
    )


@pytest.mark.parametrize(
    ("header", "after", "start"),
    [
        (None, None, 0),
        (None, 4, 4),
        ("9", None, 9),
        (" 9 ", 4, 9),
        ("", 4, 4),
        ("nine", None, None),
        ("-1", None, None),
        ("9" * 20, None, None),
    ],
)
def test_a_reconnecting_client_resumes_after_its_last_event_id(header, after, start):
    assert resume_point(header, after) == start


def test_what_the_server_writes_the_client_reads_back():
    wire = (
        format_event(event(1, cell_id="n", state=CellState.BOOTING))
        + ": keep-alive\n\n"
        + format_end(RunStatus.FINISHED, None)
    )

    messages = list(parse_sse(wire.splitlines(keepends=True)))

    assert [(m.event, m.id) for m in messages] == [("cell_changed", "1"), ("end", None)]
    assert RunEvent.from_dict(json.loads(messages[0].data)) == event(1, cell_id="n", state=CellState.BOOTING)


def test_multi_line_data_and_comments_follow_the_sse_rules():
    lines = ["retry: 2000", "", ": comment", "event: x", "data: a", "data: b", "id: 3", "", "data: plain", ""]

    assert list(parse_sse(lines)) == [SseMessage("x", "a\nb", "3"), SseMessage("message", "plain", None)]


@pytest.fixture
def store(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    store = SqlRunStore(database)
    store.create_run(
        "r",
        {"cells": [{"cell_id": "n"}]},
        candidate_id=None,
        matrix_id=None,
        priority=0,
        submitted_by=None,
        evidence_dir="/runs/r",
    )
    yield store
    database.close()


def finish(store, sequence: int) -> None:
    """What the engine does at a run's end: run_finished, then the result."""
    store.append_event(
        event(sequence, RunEventKind.RUN_FINISHED, verdict=RunVerdict.PASSED, data={"verdict": "passed"})
    )
    store.finish_run(
        RunResult(
            run_id="r",
            matrix_name="m",
            candidate_name="c",
            candidate_version="1",
            artifact_digests={},
            verdict=RunVerdict.PASSED,
            summary="all 1 cell(s) passed",
            cells=[],
            evidence_dir="/runs/r",
            started_at=1000.0,
            finished_at=1000.0 + sequence,
        )
    )


async def collect(store, wakeups, after, timing) -> list[str]:
    return [chunk async for chunk in follow(store, wakeups, "r", after, timing)]


def test_a_finished_run_is_replayed_after_the_given_event_then_ended(store):
    for sequence in range(1, 4):
        store.append_event(event(sequence, cell_id="n", state=CellState.BOOTING))
    finish(store, 4)

    chunks = asyncio.run(collect(store, RunWakeups(), 2, StreamTiming(page=1)))

    messages = list(parse_sse("".join(chunks).splitlines()))
    assert [(m.event, m.id) for m in messages] == [
        ("cell_changed", "3"),
        ("run_finished", "4"),
        ("end", None),
    ]
    assert chunks[0] == "retry: 2000\n\n"


def test_live_events_wake_the_stream_long_before_its_poll(store):
    wakeups = RunWakeups()
    bus = EventBus(store)
    bridge = EventBridge(bus, lambda e: wakeups.notify(e.run_id))

    async def scenario() -> list[str]:
        wakeups.bind(asyncio.get_running_loop())
        bridge.start()

        def engine() -> None:
            bus.publish(event(1, cell_id="n", state=CellState.PROVISIONING))
            bus.publish(
                event(2, RunEventKind.RUN_FINISHED, verdict=RunVerdict.PASSED, data={"verdict": "passed"})
            )
            store.finish_run(
                RunResult(
                    "r", "m", "c", "1", {}, RunVerdict.PASSED, "all passed", [], "/runs/r", 1000.0, 1002.0
                )
            )

        stream = asyncio.ensure_future(collect(store, wakeups, 0, StreamTiming(poll_s=60)))
        await asyncio.sleep(0)  # the stream reads the (empty) store and waits for news
        threading.Thread(target=engine).start()
        return await asyncio.wait_for(stream, timeout=20)  # a missed wake-up would wait the full 60 s poll

    try:
        chunks = asyncio.run(scenario())
    finally:
        bridge.stop()

    messages = list(parse_sse("".join(chunks).splitlines()))
    assert [m.event for m in messages] == ["cell_changed", "run_finished", "end"]


def test_a_quiet_stream_keeps_the_connection_alive_and_ends_at_its_limit(store):
    chunks = asyncio.run(
        collect(store, RunWakeups(), 0, StreamTiming(poll_s=0.01, keepalive_s=0.0, max_s=0.05))
    )

    assert chunks[0].startswith("retry:")
    assert ": keep-alive\n\n" in chunks
    assert not any(chunk.startswith("event:") for chunk in chunks)


def test_the_end_waits_for_the_result_that_follows_run_finished(store):
    """ "end" tells a client the result is readable (testbed submit --wait reads it at once)."""
    store.append_event(
        event(1, RunEventKind.RUN_FINISHED, verdict=RunVerdict.PASSED, data={"verdict": "passed"})
    )

    async def scenario() -> tuple[list[str], bool]:
        stream = asyncio.ensure_future(collect(store, RunWakeups(), 0, StreamTiming(poll_s=60)))
        await asyncio.sleep(0.5)
        ended_early = stream.done()
        store.finish_run(
            RunResult("r", "m", "c", "1", {}, RunVerdict.PASSED, "ok", [], "/runs/r", 1000.0, 1001.0)
        )
        return await asyncio.wait_for(stream, timeout=20), ended_early

    chunks, ended_early = asyncio.run(scenario())

    assert not ended_early
    messages = list(parse_sse("".join(chunks).splitlines()))
    assert [m.event for m in messages] == ["run_finished", "end"]
