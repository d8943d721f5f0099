"""Evidence per cell: listed and downloaded by plain names only — never the run's scratch (its SSH
key), never through a link or '..' — with content types that keep a guest's bytes inert."""

from pathlib import Path

import pytest

from tests.api.runs_helpers import MIXED, finish, start_run, upload_candidate

pytestmark = pytest.mark.api


@pytest.fixture(scope="module")
def run(service) -> dict:
    """A finished run with a crashed cell, plus what a real run dir also holds: the scratch dir with
    the run's private key, the run lock, an attestation, and a link a guest could never make."""
    with service.client("submitter") as client:
        finished = finish(client, start_run(client, upload_candidate(client), MIXED)["id"])
    run_dir = service.state_dir / "runs" / finished["id"]
    (run_dir / "work").mkdir(exist_ok=True)
    (run_dir / "work" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    (run_dir / "attestations").mkdir(exist_ok=True)
    (run_dir / "attestations" / "verdict.dsse.json").write_text('{"payloadType": "x"}\n')
    (run_dir / "cells" / "sim-linux" / "passwd").symlink_to("/etc/passwd")
    return {**finished, "dir": run_dir}


def test_the_listing_holds_the_evidence_and_nothing_else(viewer, run):
    listing = viewer.get(f"/api/v1/runs/{run['id']}/evidence").json()

    names = {(f["cell_id"], f["name"]) for f in listing["files"]}
    assert names == {
        (None, "run.json"),
        (None, "events.jsonl"),
        (None, "attestations/verdict.dsse.json"),
        ("sim-linux", "console.log"),
        ("sim-linux", "cell.json"),
        ("sim-linux-crash", "console.log"),
        ("sim-linux-crash", "cell.json"),
        ("sim-linux-crash", "crash.json"),
    }
    console = next(
        f for f in listing["files"] if f["cell_id"] == "sim-linux-crash" and f["name"] == "console.log"
    )
    assert console["content_type"] == "text/plain; charset=utf-8"
    assert console["size"] == (run["dir"] / "cells" / "sim-linux-crash" / "console.log").stat().st_size
    assert viewer.get(console["url"]).status_code == 200


def test_a_cells_listing_has_only_its_own_files(viewer, run):
    listing = viewer.get(f"/api/v1/runs/{run['id']}/cells/sim-linux-crash/evidence").json()

    assert {f["name"] for f in listing["files"]} == {"console.log", "cell.json", "crash.json"}
    assert {f["cell_id"] for f in listing["files"]} == {"sim-linux-crash"}


def test_a_console_is_served_as_inert_text(viewer, run):
    response = viewer.get(f"/api/v1/runs/{run['id']}/cells/sim-linux-crash/evidence/console.log")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("sandbox")
    assert response.content == (run["dir"] / "cells" / "sim-linux-crash" / "console.log").read_bytes()
    assert b"<script>" in response.content  # the guest's bytes, as they were: evidence is not rewritten


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("crash.json", "application/json"), ("cell.json", "application/json")],
)
def test_json_evidence_is_json(viewer, run, name, content_type):
    response = viewer.get(f"/api/v1/runs/{run['id']}/cells/sim-linux-crash/evidence/{name}")

    assert response.headers["content-type"] == content_type
    assert response.json()


def test_run_files_and_attestations_download(viewer, run):
    run_json = viewer.get(f"/api/v1/runs/{run['id']}/files/run.json")
    attestation = viewer.get(f"/api/v1/runs/{run['id']}/files/attestations/verdict.dsse.json")

    assert run_json.json()["verdict"] == "failed"
    assert attestation.json() == {"payloadType": "x"}


@pytest.mark.parametrize(
    "path",
    [
        "cells/sim-linux/evidence/../../../files/work/id_ed25519",
        "cells/sim-linux/evidence/..%2F..%2Fwork%2Fid_ed25519",
        "cells/sim-linux/evidence/%2e%2e/%2e%2e/%2e%2e/work/id_ed25519",
        "cells/sim-linux/evidence/passwd",
        "cells/sim-linux/evidence/.%2Fconsole.log",
        "cells/sim-linux/evidence/%2Fetc%2Fpasswd",
        "cells/no-such-cell/evidence/console.log",
        "cells/..%2Fwork/evidence/id_ed25519",
        "files/work/id_ed25519",
        "files/.lock",
        "files/attestations/../work/id_ed25519",
        "files/..%2F..%2Ftestbed.db",
        "files/cells/sim-linux/console.log",
    ],
)
def test_nothing_outside_the_evidence_is_served(viewer, run, path):
    response = viewer.get(f"/api/v1/runs/{run['id']}/{path}")

    assert response.status_code in (404, 422), response.text
    assert b"PRIVATE KEY" not in response.content
    assert b"root:" not in response.content
    assert response.headers["content-type"] == "application/json"


def test_a_run_without_an_evidence_directory_lists_nothing(service, viewer):
    from orchestrator.store import SqlRunStore, open_database

    database = open_database(service.database_url)
    try:
        SqlRunStore(database).create_run(
            f"no-evidence-{service.backend}",
            {"cells": [{"cell_id": "a"}]},
            candidate_id=None,
            matrix_id=None,
            priority=0,
            submitted_by="test",
            evidence_dir=str(Path("/nonexistent/evidence")),
        )
    finally:
        database.close()

    listing = viewer.get(f"/api/v1/runs/no-evidence-{service.backend}/evidence")
    missing = viewer.get(f"/api/v1/runs/no-evidence-{service.backend}/cells/a/evidence/console.log")

    assert listing.json() == {"run_id": f"no-evidence-{service.backend}", "files": []}
    assert missing.status_code == 404
