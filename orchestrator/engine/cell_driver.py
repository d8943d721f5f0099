"""Drives one cell: events in through a queue, the pure machine decides, commands go to the ports.

The ports (``CellPorts``) are the cell's view of the outside world — a libvirt host and a guest
channel in production, a scripted fake in the engine's own tests. Long operations (readiness
probe, install step) run in the ports' threads and report back with ``post``; the rest run
inline, and any testbed error they raise becomes an ``InfraFailed`` event.
"""

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.core.cell_commands import (
    ArmTimer,
    CancelStep,
    CancelTimer,
    CellCommand,
    CollectEvidence,
    ProbeReadiness,
    Provision,
    RequestReboot,
    RunStep,
    StopProbe,
    Teardown,
)
from orchestrator.core.cell_events import (
    Begin,
    CancelRequested,
    CellEvent,
    InfraFailed,
    Provisioned,
    TimerFired,
    TornDown,
)
from orchestrator.core.cell_machine import CellContext, advance, initial_context
from orchestrator.core.outcomes import CellOutcome, CellState
from orchestrator.core.plan import CellPlan, InstallStep
from orchestrator.core.records import CellResult, PhaseTiming
from orchestrator.engine.timers import Timers
from orchestrator.errors import TestbedError


@dataclass
class Evidence:
    """What collecting evidence produced."""

    directory: str | None = None
    crash: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


class CellPorts(Protocol):
    """What a cell needs from its host and guest channel."""

    host_name: str

    def provision(self) -> None: ...

    def start_probe(self, boot: int, stale_mark: str | None) -> None: ...

    def stop_probe(self) -> None: ...

    def start_step(self, step: InstallStep) -> None: ...

    def cancel_step(self) -> None: ...

    def request_reboot(self, boot: int) -> None: ...

    def collect_evidence(self, outcome: CellOutcome, reason: str, summary: dict[str, Any]) -> Evidence: ...

    def teardown(self) -> None: ...


Post = Callable[[CellEvent], None]
PortsFactory = Callable[[CellPlan, Post], CellPorts]
ChangeListener = Callable[[CellContext, CellContext, CellEvent], None]


class CellDriver:
    """Runs one cell to its outcome; ``post`` and ``cancel`` are safe from any thread."""

    def __init__(
        self,
        plan: CellPlan,
        make_ports: PortsFactory,
        timers: Timers,
        on_change: ChangeListener,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self._events: queue.Queue[CellEvent] = queue.Queue()
        self._ports = make_ports(plan, self.post)
        self._timers = timers
        self._on_change = on_change
        self._clock = clock
        self._context = initial_context(plan)
        self._timings: list[PhaseTiming] = []
        self._phase_started = clock()
        self._started_at: float | None = None
        self._evidence = Evidence()

    @property
    def context(self) -> CellContext:
        return self._context

    def post(self, event: CellEvent) -> None:
        self._events.put(event)

    def cancel(self, reason: str) -> None:
        self.post(CancelRequested(reason))

    def run(self) -> CellResult:
        """Block until the cell is done; never raises for the candidate's or the host's trouble."""
        self._started_at = self._clock()
        self.step(Begin())
        while self._context.state is not CellState.DONE:
            self.step(self._events.get())
        return self._result()

    def step(self, event: CellEvent) -> None:
        """Apply one event and carry out the commands it produced."""
        before = self._context
        transition = advance(before, event)
        self._context = transition.context
        if transition.context != before:
            self._note_timing(before, transition.context)
            self._on_change(before, transition.context, event)
        for command in transition.commands:
            self._execute(command)

    def _note_timing(self, before: CellContext, after: CellContext) -> None:
        if before.phase != after.phase:
            now = self._clock()
            self._timings.append(PhaseTiming(before.phase, round(now - self._phase_started, 3)))
            self._phase_started = now

    def _execute(self, command: CellCommand) -> None:
        try:
            self._dispatch(command)
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the cell must still reach teardown
            kind = "" if isinstance(exc, TestbedError) else f"internal error ({type(exc).__name__}): "
            if isinstance(command, CollectEvidence | Teardown):
                self._evidence.warnings.append(f"{type(command).__name__}: {kind}{exc}")
            else:
                self.post(InfraFailed(f"{type(command).__name__}: {kind}{exc}"))
        if isinstance(command, Teardown):
            self.post(TornDown())

    def _dispatch(self, command: CellCommand) -> None:
        match command:
            case Provision():
                self._ports.provision()
                self.post(Provisioned())
            case ArmTimer(timer=timer, seconds=seconds):
                self._timers.arm(timer, seconds, lambda: self.post(TimerFired(timer)))
            case CancelTimer(timer=timer):
                self._timers.cancel(timer)
            case ProbeReadiness(boot=boot, stale_mark=stale_mark):
                self._ports.start_probe(boot, stale_mark)
            case StopProbe():
                self._ports.stop_probe()
            case RunStep(step=step):
                self._ports.start_step(step)
            case CancelStep():
                self._ports.cancel_step()
            case RequestReboot(boot=boot):
                self._ports.request_reboot(boot)
            case CollectEvidence(outcome=outcome, reason=reason):
                self._timers.cancel_all()
                evidence = self._ports.collect_evidence(outcome, reason, self._summary(outcome, reason))
                evidence.warnings = self._evidence.warnings + evidence.warnings
                self._evidence = evidence
            case Teardown():
                self._ports.teardown()

    def _summary(self, outcome: CellOutcome, reason: str) -> dict[str, Any]:
        return {
            "cell_id": self.plan.cell_id,
            "image": self.plan.image.name,
            "kernel": self.plan.image.kernel,
            "outcome": str(outcome),
            "reason": reason,
            "boot": self._context.boot,
            "unexpected_resets": self._context.unexpected_resets,
            "timings": [{"phase": t.phase, "seconds": t.seconds} for t in self._timings],
        }

    def _result(self) -> CellResult:
        context = self._context
        return CellResult(
            cell_id=self.plan.cell_id,
            image=self.plan.image.name,
            kernel=self.plan.image.kernel,
            host=self._ports.host_name,
            outcome=context.outcome or CellOutcome.INFRA_ERROR,
            reason=context.reason,
            crash=self._evidence.crash,
            timings=list(self._timings),
            evidence_dir=self._evidence.directory,
            warnings=list(self._evidence.warnings),
            started_at=self._started_at,
            finished_at=self._clock(),
        )
