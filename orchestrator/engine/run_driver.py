"""Drives a whole run: asks the host pool for a slot per cell, starts cells as slots are granted,
retries infrastructure errors on a fresh clone, applies fail-fast, numbers events, decides once.

Cells run on an executor (threads here; remote agents later) with their own ``CellDriver``; this
loop only reacts to messages — a slot granted, a cell finished, a cancellation — in one thread.
"""

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from orchestrator.core.cell_events import CellEvent
from orchestrator.core.cell_machine import CellContext
from orchestrator.core.matrix import control_twin
from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, CellState
from orchestrator.core.plan import CellPlan, RunPlan
from orchestrator.core.ports import CellPorts, Post
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.core.verdict import decide
from orchestrator.engine.executor import CellControl, CellExecutor
from orchestrator.engine.host_pool import HostPool, Lease

RUN_MARGIN_S = 1800.0
"""Added to a run's deadline: waiting for a slot on a shared host takes time of its own."""
ABANDON_GRACE_S = 300.0
"""A cell still running this long after its own deadline is given up (its thread is stuck)."""


class CellHost(Protocol):
    """A place cells can run: a libvirt host in production."""

    name: str

    def make_ports(self, plan: CellPlan, post: Post) -> CellPorts: ...


Publish = Callable[[RunEvent], None]


@dataclass(frozen=True)
class _Granted:
    cell: CellPlan
    lease: Lease


@dataclass(frozen=True)
class _Finished:
    cell: CellPlan
    lease: Lease
    result: CellResult


@dataclass(frozen=True)
class _Cancel:
    reason: str


@dataclass(frozen=True)
class Resumption:
    """A run picked up again after the process running it died (restart reconciliation)."""

    finished: tuple[CellResult, ...]  # cells that had ended: their results stand
    last_sequence: int  # the last event persisted: numbering goes on from there
    attempts: Mapping[str, int]  # per unfinished cell, the last attempt that had started
    give_up: str = ""  # when set, unfinished cells end infra_error with this reason, unrun


@dataclass
class _Running:
    cell: CellPlan
    lease: Lease
    control: CellControl
    started: float
    abandoned: bool = False


class RunDriver:
    """Runs every cell of a plan and returns the run's result; ``cancel`` is safe from any thread."""

    def __init__(
        self,
        run_id: str,
        plan: RunPlan,
        pool: HostPool,
        hosts: Mapping[str, CellHost],
        *,
        publish: Publish,
        executor: CellExecutor,
        evidence_dir: str = "",
        priority: int = 0,
        retries: int = 1,
        resumed: "Resumption | None" = None,
        needs_kvm: Callable[[CellPlan], bool] = lambda _cell: False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.plan = plan
        self._pool = pool
        self._hosts = hosts
        self._publish = publish
        self._executor = executor
        self._evidence_dir = evidence_dir
        self._priority = priority
        self._retries = retries
        self._needs_kvm = needs_kvm  # the guest family's say (the engine knows no family)
        self._clock = clock
        self._monotonic = monotonic
        self._resumed = resumed
        self._sequence = resumed.last_sequence if resumed else 0
        self._event_lock = threading.Lock()
        self._inbox: queue.Queue[_Granted | _Finished | _Cancel] = queue.Queue()
        self._waiting: set[str] = set()
        self._running: dict[str, _Running] = {}
        self._results: dict[str, CellResult] = {}
        self._controls: dict[str, CellResult] = {}  # control twins' results, by the twin's id
        self._awaiting_control: dict[str, CellResult] = {}  # a failure whose twin is still running
        self._requested: dict[str, CellPlan] = {cell.cell_id: cell for cell in plan.cells}
        self._earlier: dict[str, list[dict[str, Any]]] = {}
        self._cancel_reason: str | None = None
        self._started = monotonic()

    # -- events -----------------------------------------------------------------------------

    def emit(self, kind: RunEventKind, **fields: Any) -> None:
        """Number the event and hand it on (the bus persists it before anyone else sees it)."""
        with self._event_lock:
            self._sequence += 1
            event = RunEvent(
                run_id=self.run_id, sequence=self._sequence, at=self._clock(), kind=kind, **fields
            )
            self._publish(event)

    def _cell_changed(
        self, cell: CellPlan, host: str
    ) -> Callable[[CellContext, CellContext, CellEvent], None]:
        def listener(before: CellContext, after: CellContext, cause: CellEvent) -> None:
            changed = before.state is not after.state or before.phase != after.phase
            self.emit(
                RunEventKind.CELL_CHANGED if changed else RunEventKind.CELL_NOTE,
                cell_id=cell.cell_id,
                state=after.state,
                previous_state=before.state,
                phase=after.phase,
                cause=type(cause).__name__,
                outcome=after.outcome,
                detail=after.reason if after.outcome else _describe(cause),
                host=host,
                attempt=cell.attempt,
            )

        return listener

    # -- the loop ---------------------------------------------------------------------------

    @property
    def deadline_s(self) -> float:
        """A run that takes longer has a testbed problem: its cells' deadlines one after the other
        (as if it never got more than one slot, retries included), plus a margin."""
        per_cell = sum(cell.deadline_s for cell in self.plan.cells) * (1 + self._retries)
        return per_cell + RUN_MARGIN_S

    def run(self) -> RunResult:
        self._started = self._monotonic()
        started = self._clock()
        resumed = self._resumed
        if resumed is None:
            self.emit(RunEventKind.RUN_STARTED, detail=f"{len(self.plan.cells)} cell(s)")
        else:
            self._results.update({result.cell_id: result for result in resumed.finished})
            self.emit(
                RunEventKind.RUN_STARTED,
                detail=f"resumed after an interruption: {len(resumed.finished)} of {len(self.plan.cells)} "
                "cell(s) had finished",
            )
        for cell in self.plan.cells:
            if cell.cell_id in self._results:
                continue
            if resumed is not None and resumed.give_up:
                reason = f"interrupted: {resumed.give_up}"
                self._record(cell, self._ended_unstarted(cell, CellOutcome.INFRA_ERROR, reason))
                continue
            attempt = 1 if resumed is None else resumed.attempts.get(cell.cell_id, 1) + 1
            self._request(replace(cell, attempt=attempt))
        while self._waiting or self._running:
            try:
                message = self._inbox.get(timeout=0.5)
            except queue.Empty:
                # Waking twice a second lets Ctrl-C/SIGTERM reach the main thread, and the watchdog run.
                self._watchdog()
                continue
            except KeyboardInterrupt:
                self.cancel("interrupted by the user")
                continue
            self._handle(message)
        return self._finish(started)

    def _handle(self, message: _Granted | _Finished | _Cancel) -> None:
        match message:
            case _Granted(cell=cell, lease=lease):
                self._start(cell, lease)
            case _Finished(cell=cell, lease=lease, result=result):
                self._on_finished(cell, lease, result)
            case _Cancel(reason=reason):
                self._on_cancel(reason)

    def cancel(self, reason: str) -> None:
        self._inbox.put(_Cancel(reason))

    def _request(self, cell: CellPlan) -> None:
        needs_kvm = self._needs_kvm(cell)
        if not self._pool.fits(cell.resources.memory_mib, needs_kvm=needs_kvm):
            reason = f"no host can take a cell needing {cell.resources.memory_mib} MiB" + (
                " and KVM" if needs_kvm else ""
            )
            self._record(cell, self._ended_unstarted(cell, CellOutcome.INFRA_ERROR, reason))
            return
        self._waiting.add(cell.cell_id)
        self._requested[cell.cell_id] = cell
        self._pool.request(
            self.run_id,
            cell.cell_id,
            cell.resources.memory_mib,
            self._priority,
            lambda lease: self._inbox.put(_Granted(cell, lease)),
            ahead=cell.control_of is not None,  # its failed original's outcome waits on it
            needs_kvm=needs_kvm,
        )

    def _start(self, cell: CellPlan, lease: Lease) -> None:
        self._waiting.discard(cell.cell_id)
        if self._cancel_reason is not None:
            self._pool.release(lease)
            ended = self._ended_unstarted(cell, CellOutcome.CANCELED, self._cancel_reason)
            if cell.control_of is not None:
                self._settle_control(cell, ended)
            else:
                self._record(cell, ended)
            return
        host = self._hosts[lease.host]
        try:
            control = self._executor.start(
                cell,
                host.make_ports,
                self._cell_changed(cell, lease.host),
                lambda result: self._inbox.put(_Finished(cell, lease, result)),
            )
        except Exception as exc:  # noqa: BLE001 - one cell the host cannot take must not end the run
            self._pool.release(lease)
            ended = self._ended_unstarted(
                cell, CellOutcome.INFRA_ERROR, f"host {lease.host} cannot run this cell: {exc}"
            )
            self._on_result(cell, replace(ended, retryable=True))
            return
        self._running[cell.cell_id] = _Running(cell, lease, control, self._monotonic())

    def _on_finished(self, cell: CellPlan, lease: Lease, result: CellResult) -> None:
        running = self._running.pop(cell.cell_id, None)
        self._pool.release(lease)
        if running is None or running.abandoned:
            return  # given up on earlier; its result came too late to count
        self._on_result(cell, result)

    def _on_result(self, cell: CellPlan, result: CellResult) -> None:
        if result.retryable and cell.attempt <= self._retries and self._cancel_reason is None:
            self._earlier.setdefault(cell.cell_id, []).append(
                {
                    "attempt": cell.attempt,
                    "outcome": str(result.outcome),
                    "reason": result.reason,
                    "evidence_dir": result.evidence_dir,
                }
            )
            self.emit(
                RunEventKind.CELL_NOTE,
                cell_id=cell.cell_id,
                state=CellState.PENDING,
                phase="retrying on a fresh clone",
                detail=f"attempt {cell.attempt} ended {result.outcome}: {result.reason}",
                attempt=cell.attempt + 1,
            )
            self._request(replace(cell, attempt=cell.attempt + 1))
            return
        if cell.control_of is not None:
            self._settle_control(cell, result)
            return
        if self.plan.controls and result.outcome in CANDIDATE_FAILURES and self._cancel_reason is None:
            self._awaiting_control[cell.cell_id] = result
            self.emit(
                RunEventKind.CELL_NOTE,
                cell_id=cell.cell_id,
                state=CellState.DONE,
                phase="waiting for its control twin",
                detail=f"ended {result.outcome}; its twin without the candidate runs now",
            )
            self._request(control_twin(cell))
            return
        self._record(cell, result)
        self._fail_fast(result)

    def _fail_fast(self, result: CellResult) -> None:
        if self.plan.fail_fast and result.outcome in CANDIDATE_FAILURES:
            self._on_cancel(f"fail-fast: {result.cell_id} ended {result.outcome}")

    def _settle_control(self, twin: CellPlan, twin_result: CellResult) -> None:
        """A failure stands if its twin without the candidate passed; else the image is to blame."""
        self._record(twin, twin_result)
        original_id = twin.control_of or ""
        original = self._awaiting_control.pop(original_id, None)
        if original is None:
            return
        if twin_result.outcome is CellOutcome.CANCELED:
            original.reason += "; its control twin was canceled before it could tell"
        elif twin_result.outcome is not CellOutcome.PASSED:
            original.reason = (
                f"{original.outcome} ({original.crash_title or original.reason}), but its control twin "
                f"without the candidate failed too ({twin_result.outcome}: {twin_result.reason}): the "
                "image or the infrastructure is at fault, not the candidate"
            )
            original.outcome = CellOutcome.INFRA_ERROR
        else:
            original.reason += "; its control twin without the candidate passed"
        self._record(self._requested[original_id], original)
        self._fail_fast(original)

    def _on_cancel(self, reason: str) -> None:
        if self._cancel_reason is None:
            self._cancel_reason = reason
        for cell_id in self._pool.withdraw(self.run_id):
            self._waiting.discard(cell_id)
            cell = self._requested[cell_id]
            ended = self._ended_unstarted(cell, CellOutcome.CANCELED, reason)
            if cell.control_of is not None:
                self._settle_control(cell, ended)
            else:
                self._record(cell, ended)
        for running in self._running.values():
            running.control.cancel(reason)

    def _watchdog(self) -> None:
        now = self._monotonic()
        if self._cancel_reason is None and now - self._started > self.deadline_s:
            self._on_cancel(f"the run took longer than its deadline ({self.deadline_s:g}s)")
        for cell_id, running in list(self._running.items()):
            if running.abandoned or now - running.started < running.cell.deadline_s + ABANDON_GRACE_S:
                continue
            running.abandoned = True  # its slot stays held: the stuck cell may still have a VM
            reason = (
                f"the cell did not finish within its deadline ({running.cell.deadline_s:g}s) "
                "and was abandoned"
            )
            self._running.pop(cell_id)
            self._record(running.cell, self._ended_unstarted(running.cell, CellOutcome.INFRA_ERROR, reason))

    def _record(self, cell: CellPlan, result: CellResult) -> None:
        result.earlier_attempts = self._earlier.get(cell.cell_id, [])
        result.image_digest = cell.image.digest
        result.content_digests = dict(cell.content_digests)
        result.control_of = cell.control_of
        if cell.image.expected_outcome and result.expected_outcome is None:
            result.expected_outcome = CellOutcome(cell.image.expected_outcome)
        if cell.control_of is not None:
            self._controls[cell.cell_id] = result
        else:
            self._results[cell.cell_id] = result
        self.emit(
            RunEventKind.CELL_FINISHED,
            cell_id=cell.cell_id,
            state=CellState.DONE,
            phase=str(result.outcome),
            outcome=result.outcome,
            detail=result.crash_title or result.reason,
            host=result.host,
            attempt=result.attempt,
            data=result.as_dict(),
        )

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
            attempt=cell.attempt,
        )
        return CellResult(
            cell.cell_id,
            cell.image.name,
            cell.image.kernel,
            None,
            outcome,
            reason,
            finished_at=self._clock(),  # it ended now, even though it never started
            attempt=cell.attempt,
            control_of=cell.control_of,
        )

    def _finish(self, started: float) -> RunResult:
        cells = [self._results[cell.cell_id] for cell in self.plan.cells]
        verdict = decide((result.cell_id, result.verdict_outcome) for result in cells)
        cells += list(self._controls.values())  # evidence too, but never counted in the verdict
        result = RunResult(
            run_id=self.run_id,
            matrix_name=self.plan.matrix_name,
            candidate_name=self.plan.candidate_name,
            candidate_version=self.plan.candidate_version,
            artifact_digests=self.plan.artifact_digests,
            verdict=verdict.verdict,
            summary=verdict.summary,
            cells=cells,
            evidence_dir=self._evidence_dir,
            started_at=started,
            finished_at=self._clock(),
            matrix_sha256=self.plan.matrix_sha256,
            matrix_source=self.plan.matrix_source,
        )
        self.emit(
            RunEventKind.RUN_FINISHED,
            verdict=verdict.verdict,
            detail=verdict.summary,
            data={"verdict": str(verdict.verdict), "summary": verdict.summary},
        )
        return result


def _describe(event: CellEvent) -> str:
    fields = getattr(event, "__dict__", {})
    return ", ".join(f"{key}={value}" for key, value in fields.items())
