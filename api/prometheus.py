"""The service's Prometheus metrics, in a registry of its own (two apps in one process never clash).

Counts of runs and cells are read from the store at each scrape, so they survive restarts and
count CLI runs too. Queue depth and free slots are gauges the engine sets as its pool changes.
"""

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.store import SqlRunStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class TestbedMetrics:
    """The registry behind /metrics and the gauges the engine sets."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, runs: SqlRunStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCollector(runs))
        self.queue_depth = Gauge(
            "testbed_queue_depth", "Cells waiting for a host slot", registry=self.registry
        )
        self.free_slots = Gauge(
            "testbed_free_slots", "Cell slots free in the host pool", ["host"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
