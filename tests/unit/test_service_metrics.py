"""The service's metrics without a server: phases grouped by kind, the pool read at each scrape,
finished cells' timings in the histogram."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.prometheus import TestbedMetrics, phase_kind
from orchestrator.core.records import RunEvent, RunEventKind
from orchestrator.engine.host_pool import PoolStatus
from orchestrator.store import SqlRunStore, open_database

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("phase", "kind"),
    [
        ("boot 2/3: stability window", "stability window"),
        ("boot 12/20: waiting for readiness", "waiting for readiness"),
        ("install candidate", "install candidate"),
        ("provisioning", "provisioning"),
        ("", "unknown"),
    ],
)
def test_phases_are_labelled_by_kind_without_boot_numbers(phase, kind):
    assert phase_kind(phase) == kind


@pytest.fixture
def store(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    yield SqlRunStore(database)
    database.close()


def scrape(metrics: TestbedMetrics) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def test_the_pool_is_read_at_each_scrape(store):
    status = [None, PoolStatus(queued=3, slots={"local": (2, 2), "rack2": (1, 4)})]
    metrics = TestbedMetrics(store, lambda: status[-1])

    busy = scrape(metrics)
    status.append(None)
    down = scrape(metrics)

    assert busy[("testbed_queue_depth", ())] == 3
    assert busy[("testbed_free_slots", (("host", "local"),))] == 0
    assert busy[("testbed_free_slots", (("host", "rack2"),))] == 3
    assert busy[("testbed_busy_slots", (("host", "rack2"),))] == 1
    assert busy[("testbed_engine_up", ())] == 1
    assert down[("testbed_engine_up", ())] == 0
    assert down[("testbed_queue_depth", ())] == 0


def test_finished_cells_feed_the_phase_histogram(store):
    metrics = TestbedMetrics(store)
    timings = [
        {"phase": "boot 1/2: waiting for readiness", "seconds": 40.0},
        {"phase": "boot 2/2: waiting for readiness", "seconds": 200.0},
        {"phase": "install candidate", "seconds": 70.0},
    ]

    metrics.observe(RunEvent("r", 1, 1.0, RunEventKind.CELL_CHANGED, cell_id="n"))
    metrics.observe(RunEvent("r", 2, 2.0, RunEventKind.CELL_FINISHED, cell_id="n", data={"timings": timings}))

    samples = scrape(metrics)
    ready = (("phase", "waiting for readiness"),)
    assert samples[("testbed_phase_duration_seconds_count", ready)] == 2
    assert samples[("testbed_phase_duration_seconds_sum", ready)] == 240.0
    assert samples[("testbed_phase_duration_seconds_bucket", (("le", "60.0"), *ready))] == 1
    assert samples[("testbed_phase_duration_seconds_count", (("phase", "install candidate"),))] == 1
