"""/metrics: Prometheus text, counted from the same store the engine writes runs into."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunResult
from orchestrator.store import SqlRunStore, open_database
from tests.api.runs_helpers import PASSING, finish, start_run, upload_candidate

pytestmark = pytest.mark.api


def samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_a_run_finished_by_the_engine_shows_in_the_metrics(service, viewer):
    before = samples(viewer)
    database = open_database(service.database_url)
    try:
        store = SqlRunStore(database)
        run_id = f"metrics-{service.backend}"
        store.create_run(
            run_id,
            {"cells": [{"cell_id": "a"}, {"cell_id": "b"}]},
            candidate_id=None,
            matrix_id=None,
            priority=0,
            submitted_by="test",
            evidence_dir="/nowhere",
        )
        store.finish_run(
            RunResult(
                run_id=run_id,
                matrix_name="m",
                candidate_name="c",
                candidate_version="1",
                artifact_digests={},
                verdict=RunVerdict.FAILED,
                summary="1 crashed",
                cells=[
                    CellResult("a", "img", "k", "local", CellOutcome.CRASHED, "panic"),
                    CellResult("b", "img", "k", "local", CellOutcome.PASSED, ""),
                ],
                evidence_dir="/nowhere",
                started_at=1.0,
                finished_at=2.0,
            )
        )
    finally:
        database.close()

    after = samples(viewer)

    failed = ("testbed_runs", (("status", "finished"), ("verdict", "failed")))
    crashed = ("testbed_cells", (("outcome", "crashed"),))
    assert after[failed] == before.get(failed, 0) + 1
    assert after[crashed] == before.get(crashed, 0) + 1
    assert after[("testbed_queue_depth", ())] == 0


def test_the_pool_and_the_phases_of_finished_cells_show_in_the_metrics(service, submitter, viewer):
    finish(submitter, start_run(submitter, upload_candidate(submitter), PASSING)["id"])

    after = samples(viewer)

    assert after[("testbed_engine_up", ())] == 1
    assert after[("testbed_free_slots", (("host", "sim"),))] == 2  # idle again: both slots free
    assert after[("testbed_busy_slots", (("host", "sim"),))] == 0
    assert after[("testbed_phase_duration_seconds_count", (("phase", "install candidate"),))] >= 1
    assert after[("testbed_phase_duration_seconds_count", (("phase", "soak window"),))] >= 1
    # Phases are grouped by kind: no label carries a boot number.
    phases = {
        dict(labels)["phase"] for name, labels in after if name == "testbed_phase_duration_seconds_count"
    }
    assert not any(phase.startswith("boot ") for phase in phases)
