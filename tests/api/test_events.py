"""/api/v1/runs/{id}/events: Server-Sent Events, every event once and in order, resumable with
Last-Event-ID; the status page's session cookie may read them but change nothing."""

import json

import pytest

from tests.api.runs_helpers import MIXED, PASSING, SLOW, events_of, follow, start_run, upload_candidate

pytestmark = pytest.mark.api


@pytest.fixture(scope="module")
def candidate_id(service) -> str:
    with service.client("submitter") as client:
        return upload_candidate(client)


@pytest.fixture(scope="module")
def finished_run(service, candidate_id) -> dict:
    """A run followed to its end; its messages."""
    with service.client("submitter") as client:
        run = start_run(client, candidate_id, MIXED)
        return {"id": run["id"], "messages": follow(client, run["id"])}


@pytest.fixture
def session_cookie(service) -> str:
    with service.client(None) as client:
        response = client.post("/login", data={"token": service.tokens["viewer"], "next": "/runs"})
    assert response.status_code == 303
    return response.cookies["testbed_session"]


def test_every_event_comes_once_in_order_with_its_sequence_as_id_then_the_end(finished_run):
    messages = finished_run["messages"]
    events = events_of(messages)

    assert [int(m.id) for m in messages[:-1]] == list(range(1, len(events) + 1))
    assert [m.event for m in messages[:-1]] == [e["kind"] for e in events]
    assert events[0]["kind"] == "run_started"
    assert events[-1]["kind"] == "run_finished"
    assert events[-1]["verdict"] == "failed"
    assert messages[-1].event == "end"
    assert messages[-1].id is None  # the end does not move a reconnecting client's position
    assert json.loads(messages[-1].data) == {"status": "finished", "verdict": "failed"}
    finished = [e for e in events if e["kind"] == "cell_finished"]
    assert {e["cell_id"]: e["outcome"] for e in finished} == {
        "sim-linux": "passed",
        "sim-linux-crash": "crashed",
    }
    crashed = next(e for e in finished if e["cell_id"] == "sim-linux-crash")
    assert crashed["data"]["crash"]["title"].startswith("BUG: kernel NULL pointer dereference")


@pytest.mark.parametrize("how", ["header", "query"])
def test_a_client_that_reconnects_gets_exactly_what_it_missed(viewer, finished_run, how):
    everything = events_of(finished_run["messages"])
    seen = 5

    if how == "header":
        again = follow(viewer, finished_run["id"], headers={"Last-Event-ID": str(seen)})
    else:
        again = follow(viewer, finished_run["id"], params={"after": seen})

    assert events_of(again) == everything[seen:]
    assert again[-1].event == "end"


def test_a_stream_opened_while_the_run_goes_follows_it_live(submitter, candidate_id):
    run = start_run(submitter, candidate_id, SLOW)

    events = events_of(follow(submitter, run["id"]))

    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    states = [e["state"] for e in events if e["kind"] == "cell_changed"]
    assert states[0] == "provisioning"
    assert {"booting", "stabilizing", "installing", "soaking", "done"} <= set(states)
    assert events[-1]["kind"] == "run_finished"


def test_a_bad_last_event_id_is_422_and_an_unknown_run_404(viewer):
    bad = viewer.get("/api/v1/runs/any/events", headers={"Last-Event-ID": "seven"})
    unknown = viewer.get("/api/v1/runs/20990101-000000-0000/events")

    assert bad.status_code == 422
    assert bad.json()["problems"] == [
        {"location": "header", "field": "last-event-id", "message": "not a sequence number"}
    ]
    assert unknown.status_code == 404


def test_the_page_session_reads_events_but_never_starts_or_cancels(
    service, finished_run, candidate_id, session_cookie
):
    cookies = {"testbed_session": session_cookie}
    with service.client(None) as browser:
        browser.cookies.update(cookies)
        messages = follow(browser, finished_run["id"])
        started = browser.post("/api/v1/runs", json={"candidate_id": candidate_id, "matrix": PASSING})
        canceled = browser.post(f"/api/v1/runs/{finished_run['id']}/cancel")

    assert events_of(messages) == events_of(finished_run["messages"])
    assert started.status_code == 401
    assert canceled.status_code == 401


def test_a_revoked_session_reads_nothing(service, admin, finished_run):
    created = admin.post("/api/v1/tokens", json={"name": "short-lived", "role": "viewer"}).json()
    with service.client(None) as browser:
        login = browser.post("/login", data={"token": created["secret"]})
        browser.cookies.update({"testbed_session": login.cookies["testbed_session"]})
        admin.delete(f"/api/v1/tokens/{created['token']['id']}")
        response = browser.get(f"/api/v1/runs/{finished_run['id']}/events")

    assert login.status_code == 303
    assert response.status_code == 401
