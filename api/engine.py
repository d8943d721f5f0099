"""What the service needs from the engine: the seam between the API and ``orchestrator.engine``.

In production this is ``orchestrator.engine.gate.Testbed`` (libvirt hosts, one host pool shared by
every run, the event bus persisting into the SQL store). Tests pass an engine of their own (same
bus, same store, simulated guests), so the service's code paths are the production ones.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from orchestrator.config import Settings
from orchestrator.core.records import CellResult, RunResult
from orchestrator.engine.event_bus import EventBus
from orchestrator.engine.gate import PreparedGate, Testbed
from orchestrator.engine.host_pool import PoolStatus
from orchestrator.store import SqlRunStore


class RunControl(Protocol):
    """A run in progress in this process (``orchestrator.engine.gate.RunHandle``)."""

    run_id: str

    @property
    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> RunResult | None: ...

    def cancel(self, reason: str) -> None: ...


class PoolView(Protocol):
    """The shared host pool, as /metrics sees it."""

    def status(self) -> PoolStatus: ...


class Engine(Protocol):
    """The long-lived engine of one service process."""

    bus: EventBus

    @property
    def pool(self) -> PoolView: ...

    def open(self) -> object:
        """Connect hosts, sweep what killed runs left (domains, overlays, keys); may take seconds."""
        ...

    def close(self) -> None: ...

    def start(
        self,
        prepared: PreparedGate,
        *,
        run_id: str | None = None,
        priority: int = 0,
        candidate_id: str | None = None,
        matrix_id: str | None = None,
        submitted_by: str | None = None,
    ) -> RunControl: ...

    def resume(
        self,
        prepared: PreparedGate,
        run_id: str,
        *,
        finished: Sequence[CellResult],
        last_sequence: int,
        attempts: Mapping[str, int],
        resumes: int,
        priority: int = 0,
    ) -> RunControl: ...


EngineFactory = Callable[[Settings, SqlRunStore], Engine]
"""Makes the engine of a service (not yet opened) over the service's run store."""


def libvirt_engine(settings: Settings, runs: SqlRunStore) -> Engine:
    """The production engine: every event persisted to the SQL store before it is fanned out."""
    return Testbed(settings, store=runs)
