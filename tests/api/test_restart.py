"""Restart reconciliation with the simulated engine: SIGKILL the service mid-run, start it again on
the same state; the run is resumed (finished cells stand, the interrupted one runs again as a new
attempt), a run interrupted twice ends its leftover cells infra_error, finished runs never change,
and the event numbering goes on without a gap or a repeat. (The same on real guests, with leaked
domains and overlays checked through libvirt: tests/integration/test_service_real_guests.py.)"""

import itertools
from collections.abc import Iterator

import pytest

from tests.api.conftest import Service, running_service
from tests.api.runs_helpers import (
    PASSING,
    SLOW_AND_QUICK,
    events_of,
    finish,
    follow,
    start_run,
    stream,
    upload_candidate,
)

pytestmark = pytest.mark.api

_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path) -> tuple[str, str]:
    """(backend, database URL) of a fresh state for one service and its restarts."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database(f"restart_{next(_numbers)}")
    else:
        url = f"sqlite:///{tmp_path / 'testbed.db'}"
    return request.param, url


def killed(service: Service) -> None:
    assert service.process is not None
    service.process.kill()  # SIGKILL: no shutdown, no cancel, nothing flushed
    service.process.wait()


def until(messages: Iterator, predicate) -> list:
    seen = []
    for message in messages:
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"the stream ended first: {seen}")


def quick_cell_finished(message) -> bool:
    return message.event == "cell_finished" and '"cell_id":"sim-linux"' in message.data


def test_a_run_killed_mid_way_is_resumed_and_finished_runs_stay_as_they_were(state, tmp_path):
    backend, url = state
    with running_service(backend, tmp_path, url) as first, first.client("submitter") as client:
        candidate = upload_candidate(client)
        earlier = finish(client, start_run(client, candidate, PASSING)["id"])
        run = start_run(client, candidate, SLOW_AND_QUICK)
        before_kill = until(stream(client, run["id"]), quick_cell_finished)
        killed(first)
    with (
        running_service(backend, tmp_path, url, tokens=first.tokens) as second,
        second.client("viewer") as client,
    ):
        resumed = finish(client, run["id"])
        everything = events_of(follow(client, run["id"]))
        earlier_now = client.get(f"/api/v1/runs/{earlier['id']}").json()

    assert earlier_now == earlier
    assert resumed["verdict"] == "passed"
    cells = {cell["id"]: cell for cell in resumed["cells"]}
    assert (cells["sim-linux"]["outcome"], cells["sim-linux"]["attempt"]) == ("passed", 1)
    assert (cells["sim-linux-slow"]["outcome"], cells["sim-linux-slow"]["attempt"]) == ("passed", 2)
    quick_before = next(m for m in before_kill if quick_cell_finished(m))
    quick_after = next(e for e in everything if e["kind"] == "cell_finished" and e["cell_id"] == "sim-linux")
    assert quick_after["sequence"] == int(quick_before.id)  # the finished cell was not run again
    assert [e["sequence"] for e in everything] == list(range(1, len(everything) + 1))
    starts = [e for e in everything if e["kind"] == "run_started"]
    assert len(starts) == 2
    assert starts[1]["detail"].startswith("resumed after an interruption: 1 of 2 cell(s) had finished")
    assert (
        tmp_path / "runs" / run["id"] / "cells" / "sim-linux-slow" / "attempt-2" / "console.log"
    ).is_file()


def test_a_run_interrupted_twice_gives_up_on_its_leftover_cells(state, tmp_path):
    backend, url = state
    with running_service(backend, tmp_path, url) as first, first.client("submitter") as client:
        run = start_run(client, upload_candidate(client), SLOW_AND_QUICK)
        until(stream(client, run["id"]), quick_cell_finished)
        killed(first)
    with (
        running_service(backend, tmp_path, url, tokens=first.tokens) as second,
        second.client("viewer") as client,
    ):
        seen = events_of(
            until(stream(client, run["id"]), lambda m: m.event == "run_started" and "resumed" in m.data)
        )
        killed(second)
    with (
        running_service(backend, tmp_path, url, tokens=first.tokens) as third,
        third.client("viewer") as client,
    ):
        ended = finish(client, run["id"])

    assert seen[-1]["kind"] == "run_started"
    assert ended["verdict"] == "inconclusive"
    cells = {cell["id"]: cell for cell in ended["cells"]}
    assert cells["sim-linux"]["outcome"] == "passed"
    assert cells["sim-linux-slow"]["outcome"] == "infra_error"
    assert "interrupted" in cells["sim-linux-slow"]["reason"]
