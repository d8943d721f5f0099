"""When the database goes away under a running service, it answers 503 as JSON, never 500."""

import psycopg
import pytest

from tests.api.conftest import running_service

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
