"""When the database goes away under a running service, it answers 503 as JSON, never 500."""

import sys

import psycopg
import pytest

from tests.api.conftest import running_service
from tests.api.simulated_app import NO_HOST

pytestmark = pytest.mark.api


def test_a_lost_database_is_a_503_and_healthz_says_so(postgres_server, tmp_path):
    url = postgres_server.create_database("outage")
    with running_service("postgresql", tmp_path, url) as service, service.client("admin") as admin:
        assert admin.get("/api/v1/candidates").status_code == 200
        with psycopg.connect(
            f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/postgres", autocommit=True
        ) as server:
            server.execute("DROP DATABASE outage WITH (FORCE)")

        listing = admin.get("/api/v1/candidates")
        health = admin.get("/healthz")

    assert listing.status_code == 503
    assert listing.json()["error"] == "unavailable"
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"


def test_a_service_whose_hosts_cannot_be_opened_says_why_and_refuses_runs_not_reads(tmp_path):
    without_hosts = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.api.simulated_app:create_without_hosts",
    ]
    with (
        running_service(
            "sqlite", tmp_path, f"sqlite:///{tmp_path / 'testbed.db'}", command=without_hosts
        ) as service,
        service.client("submitter") as client,
    ):
        health = client.get("/healthz")
        listing = client.get("/api/v1/runs")
        refused = client.post(
            "/api/v1/runs", json={"candidate_id": "c" * 64, "matrix": "name: m\nimages: [x]\n"}
        )

    assert health.status_code == 200  # the service and its store answer
    assert health.json() == {
        "status": "ok",
        "database": "sqlite",
        "engine": "unavailable",
        "engine_problem": NO_HOST,
    }
    assert listing.status_code == 200
    assert refused.status_code == 503
    assert NO_HOST in refused.json()["message"]
