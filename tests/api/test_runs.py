"""/api/v1/runs: start (validated whole, accepted at once), list, read, cancel, result; over HTTP
against the service (simulated guests, the real run machinery), on SQLite and on PostgreSQL."""

import pytest

from tests.api.runs_helpers import (
    MIXED,
    PASSING,
    SLOW,
    events_of,
    finish,
    follow,
    start_run,
    upload_candidate,
)

pytestmark = pytest.mark.api

OURS = "the stored candidate"  # replaced by the module's candidate id in the table below


@pytest.fixture(scope="module")
def candidate_id(service) -> str:
    with service.client("submitter") as client:
        return upload_candidate(client)


def test_a_run_is_accepted_at_once_and_ends_with_every_cells_outcome(submitter, candidate_id):
    run = start_run(submitter, candidate_id, MIXED)

    assert run["status"] in ("queued", "running")
    assert run["verdict"] is None
    assert run["submitted_by"] == "test-submitter"
    assert [c["id"] for c in run["cells"]] == ["sim-linux", "sim-linux-crash"]
    assert {c["coordinates"]["column"] for c in run["cells"]} == {"no co-installed product"}

    finished = finish(submitter, run["id"])

    assert finished["verdict"] == "failed"
    assert finished["summary"] == "1 of 2 cell(s) failed: sim-linux-crash"
    cells = {c["id"]: c for c in finished["cells"]}
    assert cells["sim-linux"]["outcome"] == "passed"
    assert cells["sim-linux-crash"]["outcome"] == "crashed"
    assert cells["sim-linux-crash"]["crash_title"] == (
        "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
    )
    assert "install candidate" in [t["phase"] for t in cells["sim-linux"]["timings"]]
    assert all(c["state"] == "done" and c["seconds"] > 0 for c in cells.values())
    assert finished["cell_counts"] == {"crashed": 1, "passed": 1}
    assert set(finished["artifact_digests"]) == {"sensor-linux", "channel-291"}


def test_the_location_header_names_the_run(submitter, candidate_id):
    response = submitter.post("/api/v1/runs", json={"candidate_id": candidate_id, "matrix": PASSING})

    assert response.status_code == 202
    assert response.headers["location"] == f"/api/v1/runs/{response.json()['id']}"
    assert submitter.get(response.headers["location"]).json()["id"] == response.json()["id"]
    finish(submitter, response.json()["id"])


def test_a_stored_matrix_runs_by_its_id(submitter, candidate_id):
    matrix = submitter.post("/api/v1/matrices", content=PASSING, headers={"Content-Type": "application/yaml"})
    run = submitter.post(
        "/api/v1/runs", json={"candidate_id": candidate_id, "matrix_id": matrix.json()["id"]}
    )

    assert run.status_code == 202, run.text
    assert run.json()["matrix_id"] == matrix.json()["id"]
    assert finish(submitter, run.json()["id"])["verdict"] == "passed"


def test_a_matrix_text_is_stored_as_a_matrix(submitter, candidate_id):
    run = start_run(submitter, candidate_id, PASSING)

    stored = submitter.get(f"/api/v1/matrices/{run['matrix_id']}")

    assert stored.status_code == 200
    assert stored.json()["text"] == PASSING
    finish(submitter, run["id"])


@pytest.mark.parametrize(
    ("body", "location", "field"),
    [
        ({"candidate_id": "0" * 64, "matrix": PASSING}, "body", "candidate_id"),
        ({"matrix": PASSING}, "body", "candidate_id"),
        ({"candidate_id": "CANDIDATE", "matrix": PASSING}, "body", "candidate_id"),
        ({"candidate_id": OURS, "matrix_id": "0" * 64}, "body", "matrix_id"),
        ({"candidate_id": OURS}, "body", "matrix_id"),
        ({"candidate_id": OURS, "matrix": PASSING, "matrix_id": "1" * 64}, "body", "matrix_id"),
        (
            {"candidate_id": OURS, "matrix": "name: m\nimages: [sim-linux]\nreboots: 0\n"},
            "body",
            "matrix.reboots",
        ),
        ({"candidate_id": OURS, "matrix": "name: m\nimages: [no-such-image]\n"}, "matrix", ""),
        ({"candidate_id": OURS, "matrix": PASSING, "priority": 1000}, "body", "priority"),
        ({"candidate_id": OURS, "matrix": PASSING, "colour": "blue"}, "body", "colour"),
    ],
)
def test_a_bad_run_request_is_422_naming_the_field_and_starts_nothing(
    submitter, candidate_id, body, location, field
):
    body = {**body, "candidate_id": candidate_id} if body.get("candidate_id") == OURS else body
    before = submitter.get("/api/v1/runs").json()["total"]

    response = submitter.post("/api/v1/runs", json=body)

    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p["location"] == location and p["field"].startswith(field) for p in problems), problems
    assert submitter.get("/api/v1/runs").json()["total"] == before


def test_an_unknown_image_is_named_in_the_refusal(submitter, candidate_id):
    response = submitter.post(
        "/api/v1/runs", json={"candidate_id": candidate_id, "matrix": "name: m\nimages: [no-such-image]\n"}
    )

    assert response.status_code == 422
    assert "no-such-image" in response.text
    assert "/candidates/" not in response.text  # no server path leaks out


def test_viewers_read_runs_but_cannot_start_or_cancel_them(viewer, submitter, candidate_id):
    run = start_run(submitter, candidate_id, PASSING)

    assert viewer.get(f"/api/v1/runs/{run['id']}").status_code == 200
    assert (
        viewer.post("/api/v1/runs", json={"candidate_id": candidate_id, "matrix": PASSING}).status_code == 403
    )
    assert viewer.post(f"/api/v1/runs/{run['id']}/cancel").status_code == 403
    finish(submitter, run["id"])


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/runs/x/events", "/api/v1/runs/x/evidence"])
def test_runs_need_a_token(anonymous, path):
    response = anonymous.get(path)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_runs_are_listed_newest_first_with_filters_and_pages(service, submitter, admin):
    candidate = upload_candidate(submitter, version="9.9.9-listing")
    first = finish(submitter, start_run(submitter, candidate, PASSING)["id"])
    second = finish(submitter, start_run(submitter, candidate, MIXED)["id"])

    page = admin.get("/api/v1/runs", params={"candidate_id": candidate}).json()
    failed = admin.get("/api/v1/runs", params={"candidate_id": candidate, "verdict": "failed"}).json()
    one = admin.get("/api/v1/runs", params={"candidate_id": candidate, "limit": 1, "offset": 1}).json()
    nobody = admin.get("/api/v1/runs", params={"submitted_by": "nobody"}).json()

    assert [r["id"] for r in page["items"]] == [second["id"], first["id"]]
    assert page["total"] == 2
    assert "cells" not in page["items"][0]
    assert page["items"][0]["cell_counts"] == {"crashed": 1, "passed": 1}
    assert [r["id"] for r in failed["items"]] == [second["id"]]
    assert (one["total"], [r["id"] for r in one["items"]]) == (2, [first["id"]])
    assert nobody == {"items": [], "total": 0, "limit": 50, "offset": 0}


@pytest.mark.parametrize(
    "query", [{"status": "sleeping"}, {"verdict": "maybe"}, {"limit": 0}, {"offset": -1}]
)
def test_bad_listing_filters_are_422(viewer, query):
    response = viewer.get("/api/v1/runs", params=query)

    assert response.status_code == 422
    assert response.json()["problems"][0]["location"] == "query"


def test_a_running_run_is_canceled_and_ends_inconclusive(submitter, candidate_id):
    run = start_run(submitter, candidate_id, SLOW)

    response = submitter.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "wrong candidate"})
    finished = finish(submitter, run["id"])

    assert response.status_code == 202
    assert finished["verdict"] == "inconclusive"
    (cell,) = finished["cells"]
    assert cell["outcome"] == "canceled"
    assert cell["reason"] == "wrong candidate"


def test_canceling_a_finished_run_is_409_and_an_unknown_one_404(submitter, candidate_id):
    run = finish(submitter, start_run(submitter, candidate_id, PASSING)["id"])

    finished = submitter.post(f"/api/v1/runs/{run['id']}/cancel")
    unknown = submitter.post("/api/v1/runs/20990101-000000-0000/cancel")

    assert finished.status_code == 409
    assert finished.json()["error"] == "conflict"
    assert unknown.status_code == 404
    assert unknown.json()["problems"] == [{"location": "path", "field": "run_id", "message": "no such run"}]


def test_the_result_binds_the_verdict_to_the_digests_once_finished(submitter, candidate_id):
    run = start_run(submitter, candidate_id, SLOW)
    early = submitter.get(f"/api/v1/runs/{run['id']}/result")
    submitter.post(f"/api/v1/runs/{run['id']}/cancel")
    follow(submitter, run["id"])

    result = submitter.get(f"/api/v1/runs/{run['id']}/result")

    assert early.status_code == 409
    assert result.status_code == 200
    body = result.json()
    assert body["run_id"] == run["id"]
    assert body["verdict"] == "inconclusive"
    assert body["candidate"]["artifacts"] == run["artifact_digests"]
    assert [c["cell_id"] for c in body["cells"]] == ["sim-linux-slow"]


def test_two_runs_at_once_never_hold_more_cells_than_the_pool_has_slots(submitter, candidate_id):
    runs = [
        start_run(submitter, candidate_id, SLOW.replace("[sim-linux-slow]", "[sim-linux-slow, sim-linux]"))
        for _ in range(2)
    ]
    events = [event for run in runs for event in events_of(follow(submitter, run["id"]))]

    # A cell holds its slot from provisioning until its machine reaches done (its teardown is over).
    moments = []
    for event in events:
        if event["kind"] == "cell_changed" and event["state"] == "provisioning":
            moments.append((event["at"], 1))
        elif event["kind"] == "cell_changed" and event["state"] == "done":
            moments.append((event["at"], -1))
    busy, peak = 0, 0
    for _, change in sorted(moments):  # at a tie an end (-1) sorts before a start
        busy += change
        peak = max(peak, busy)

    assert len(moments) == 8  # four cells, each started and ended once
    assert peak == 2  # the simulated host's two slots, shared by both runs, never more
