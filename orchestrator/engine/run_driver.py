"""Drives a whole run: places cells on hosts as capacity frees up, applies fail-fast, numbers events.

Each cell runs in its own thread with its own ``CellDriver``; this loop only decides what starts
next (with the pure scheduler) and reacts to cells finishing.
"""

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from orchestrator.core.cell_events import CellEvent
from orchestrator.core.cell_machine import CellContext
from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, CellState
from orchestrator.core.plan import CellPlan, RunPlan
from orchestrator.core.records import CellResult, RunEvent, RunEventKind
from orchestrator.core.scheduler import Demand, HostCapacity, assign
from orchestrator.core.verdict import Verdict, decide
from orchestrator.engine.cell_driver import CellDriver, CellPorts, Post
from orchestrator.engine.timers import ThreadTimers, Timers
from orchestrator.errors import TestbedError


class CellHost(Protocol):
    """A place cells can run: a libvirt host in production."""

    name: str

    def max_cells(self) -> int: ...

    def free_memory_mib(self) -> int: ...

    def make_ports(self, plan: CellPlan, post: Post) -> CellPorts: ...


Publish = Callable[[RunEvent], None]


class RunDriver:
    """Runs every cell of a plan and returns their results; ``cancel`` is safe from any thread."""

    def __init__(
        self,
        run_id: str,
        plan: RunPlan,
        hosts: Sequence[CellHost],
        publish: Publish,
        *,
        make_timers: Callable[[], Timers] = ThreadTimers,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_id = run_id
        self.plan = plan
        self._hosts = {host.name: host for host in hosts}
        self._publish = publish
        self._make_timers = make_timers
        self._clock = clock
        self._sequence = 0
        self._event_lock = threading.Lock()
        self._finished: queue.Queue[tuple[str, CellResult]] = queue.Queue()
        self._running: dict[str, tuple[CellDriver, str]] = {}
        self._results: dict[str, CellResult] = {}
        self._cancel_reason: str | None = None
        self._lock = threading.Lock()

    # -- events -----------------------------------------------------------------------------

    def emit(self, kind: RunEventKind, **fields: Any) -> None:
        with self._event_lock:
            self._sequence += 1
            event = RunEvent(
                run_id=self.run_id, sequence=self._sequence, at=self._clock(), kind=kind, **fields
            )
            self._publish(event)

    def _cell_changed(self, cell_id: str, host: str) -> Callable[[CellContext, CellContext, CellEvent], None]:
        def listener(before: CellContext, after: CellContext, cause: CellEvent) -> None:
            changed = before.state is not after.state or before.phase != after.phase
            self.emit(
                RunEventKind.CELL_CHANGED if changed else RunEventKind.CELL_NOTE,
                cell_id=cell_id,
                state=after.state,
                previous_state=before.state,
                phase=after.phase,
                cause=type(cause).__name__,
                outcome=after.outcome,
                detail=after.reason if after.outcome else _describe(cause),
                host=host,
            )

        return listener

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> list[CellResult]:
        self.emit(RunEventKind.RUN_STARTED, detail=f"{len(self.plan.cells)} cell(s)")
        pending = list(self.plan.cells)
        while pending or self._running:
            if self._cancel_reason is not None:
                for cell in pending:
                    self._record(
                        cell.cell_id, self._ended_unstarted(cell, CellOutcome.CANCELED, self._cancel_reason)
                    )
                pending = []
            else:
                before = len(pending)
                pending = self._start_what_fits(pending)
                if not self._running and len(pending) < before:
                    continue  # cells were placed but could not start: their slots are free again
            if not self._running:
                if pending:
                    for cell in pending:
                        self._record(cell.cell_id, self._unplaceable(cell))
                    pending = []
                continue
            try:
                cell_id, result = self._next_finished()
            except KeyboardInterrupt:
                self.cancel("interrupted by the user")
                continue
            with self._lock:
                self._running.pop(cell_id, None)
            self._record(cell_id, result)
            if self.plan.fail_fast and result.outcome in CANDIDATE_FAILURES:
                self.cancel(f"fail-fast: {cell_id} ended {result.outcome}")
        results = [self._results[cell.cell_id] for cell in self.plan.cells]
        verdict = self.verdict(results)
        self.emit(RunEventKind.RUN_FINISHED, verdict=verdict.verdict, detail=verdict.summary)
        return results

    def _next_finished(self) -> tuple[str, CellResult]:
        """Wait for a cell to finish, waking often: the kernel may hand SIGINT/SIGTERM to another
        thread, and Python runs signal handlers only when the main thread runs."""
        while True:
            try:
                return self._finished.get(timeout=0.5)
            except queue.Empty:
                continue

    @staticmethod
    def verdict(results: Sequence[CellResult]) -> Verdict:
        return decide((result.cell_id, result.outcome) for result in results)

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._cancel_reason is None:
                self._cancel_reason = reason
            running = [driver for driver, _ in self._running.values()]
        for driver in running:
            driver.cancel(reason)

    def _capacities(self) -> list[HostCapacity]:
        with self._lock:
            busy = [host for _, host in self._running.values()]
        capacities = []
        for name, host in self._hosts.items():
            try:
                capacity = HostCapacity(name, host.max_cells(), busy.count(name), host.free_memory_mib())
            except TestbedError:
                # A host that cannot say how much room it has gets no new cells this round.
                capacity = HostCapacity(name, 0, busy.count(name), 0, healthy=False)
            capacities.append(capacity)
        return capacities

    def _start_what_fits(self, pending: list[CellPlan]) -> list[CellPlan]:
        demands = [Demand(cell.cell_id, cell.resources.memory_mib) for cell in pending]
        placements = assign(demands, self._capacities())
        for cell in pending:
            if cell.cell_id in placements:
                self._start(cell, placements[cell.cell_id])
        return [cell for cell in pending if cell.cell_id not in placements]

    def _start(self, cell: CellPlan, host_name: str) -> None:
        host = self._hosts[host_name]
        try:
            driver = CellDriver(
                cell, host.make_ports, self._make_timers(), self._cell_changed(cell.cell_id, host_name)
            )
        except Exception as exc:  # noqa: BLE001 - one cell the host cannot take must not end the run
            self._record(
                cell.cell_id,
                self._ended_unstarted(
                    cell, CellOutcome.INFRA_ERROR, f"host {host_name} cannot run this cell: {exc}"
                ),
            )
            return
        with self._lock:
            self._running[cell.cell_id] = (driver, host_name)

        def work() -> None:
            self._finished.put((cell.cell_id, driver.run()))

        threading.Thread(target=work, name=f"cell-{cell.cell_id}", daemon=True).start()

    def _record(self, cell_id: str, result: CellResult) -> None:
        self._results[cell_id] = result

    def _unplaceable(self, cell: CellPlan) -> CellResult:
        reason = f"no host can take a cell needing {cell.resources.memory_mib} MiB"
        return self._ended_unstarted(cell, CellOutcome.INFRA_ERROR, reason)

    def _ended_unstarted(self, cell: CellPlan, outcome: CellOutcome, reason: str) -> CellResult:
        """A cell that ends without ever holding a VM: one event, and a result with no evidence."""
        self.emit(
            RunEventKind.CELL_CHANGED,
            cell_id=cell.cell_id,
            state=CellState.DONE,
            previous_state=CellState.PENDING,
            phase=str(outcome),
            outcome=outcome,
            detail=reason,
        )
        return CellResult(cell.cell_id, cell.image.name, cell.image.kernel, None, outcome, reason)


def _describe(event: CellEvent) -> str:
    fields = getattr(event, "__dict__", {})
    return ", ".join(f"{key}={value}" for key, value in fields.items())
