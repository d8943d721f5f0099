"""The service's Prometheus metrics, in a registry of its own (two apps in one process never clash).

Counts of runs and cells are read from the store at each scrape, so they survive restarts and
count CLI runs too. Queue depth and slots are read from the engine's host pool at each scrape.
Phase durations are a histogram of the cells this process saw finish (Prometheus handles the
reset when the process restarts); phases are grouped by kind ("boot 2/3: stability window" is
"stability window"), so the label set stays small.
"""

import re
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.core.records import RunEvent, RunEventKind
from orchestrator.engine.host_pool import PoolStatus
from orchestrator.store import SqlRunStore
from orchestrator.store.projection import timings_from

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PHASE_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)

_BOOT_PREFIX = re.compile(r"^boot \d+/\d+: ")


def phase_kind(phase: str) -> str:
    """The phase without its boot number: a bounded label."""
    return _BOOT_PREFIX.sub("", phase).strip() or "unknown"


class _StoreCollector(Collector):
    """Runs by status and verdict, cells by outcome: straight from the store."""

    def __init__(self, runs: SqlRunStore) -> None:
        self._runs = runs

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "testbed_runs", "Runs in the store by status and verdict", labels=["status", "verdict"]
        )
        for (status, verdict), count in sorted(self._runs.runs_by_verdict().items(), key=str):
            runs.add_metric([str(status), str(verdict or "")], count)
        yield runs
        cells = GaugeMetricFamily(
            "testbed_cells", "Finished cells in the store by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(self._runs.cells_by_outcome().items()):
            cells.add_metric([str(outcome)], count)
        yield cells


class _PoolCollector(Collector):
    """The shared host pool at the time of the scrape (nothing queued when the engine is down)."""

    def __init__(self, pool_status: Callable[[], PoolStatus | None]) -> None:
        self._pool_status = pool_status

    def collect(self) -> Iterator[Metric]:
        status = self._pool_status()
        up = GaugeMetricFamily("testbed_engine_up", "1 when runs can start, else 0")
        up.add_metric([], 0 if status is None else 1)
        yield up
        queued = GaugeMetricFamily("testbed_queue_depth", "Cells waiting for a host slot")
        queued.add_metric([], 0 if status is None else status.queued)
        yield queued
        free = GaugeMetricFamily("testbed_free_slots", "Cell slots free in the host pool", labels=["host"])
        busy = GaugeMetricFamily("testbed_busy_slots", "Cell slots in use on each host", labels=["host"])
        for host, (in_use, most) in sorted((status.slots if status else {}).items()):
            free.add_metric([host], max(0, most - in_use))
            busy.add_metric([host], in_use)
        yield free
        yield busy


class TestbedMetrics:
    """The registry behind /metrics."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(
        self, runs: SqlRunStore, pool_status: Callable[[], PoolStatus | None] = lambda: None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCollector(runs))
        self.registry.register(_PoolCollector(pool_status))
        self.phase_seconds = Histogram(
            "testbed_phase_duration_seconds",
            "How long cells spent in each kind of phase (cells this process saw finish)",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )

    def observe(self, event: RunEvent) -> None:
        """Take a finished cell's phase timings into the histogram."""
        if event.kind is not RunEventKind.CELL_FINISHED or not event.data:
            return
        for timing in timings_from(event.data.get("timings")):
            self.phase_seconds.labels(phase_kind(timing.phase)).observe(max(0.0, timing.seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)
