"""Drives one cell: events in through a queue, the pure machine decides, commands go to the ports.

The ports (``CellPorts``) are the cell's view of the outside world — a libvirt host and a guest
channel in production, a scripted fake in the engine's own tests. Long operations (probes,
install steps, reconnecting) run in the ports' threads and report back with ``post``; the rest run
inline, and any error they raise becomes an ``InfraFailed`` event. Nothing a port does can leave
the cell without an outcome: an exception escaping the loop itself ends the cell as
``infra_error`` (after trying to keep evidence and tear down).
"""

import queue
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from orchestrator.core.cell_commands import (
    ArmTimer,
    CancelStep,
    CancelTimer,
    CellCommand,
    CollectEvidence,
    InjectNmi,
    ProbeReadiness,
    Provision,
    Reconnect,
    RequestReboot,
    ResetGuest,
    RunProbe,
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
from orchestrator.core.plan import CellPlan
from orchestrator.core.ports import CellPorts, Evidence, Post
from orchestrator.core.records import CellResult, PhaseTiming
from orchestrator.engine.timers import Timers
from orchestrator.errors import TestbedError

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
        self._installed_at: float | None = None
        self._ended_at: float | None = None
        self._evidence = Evidence()

    @property
    def context(self) -> CellContext:
        return self._context

    @property
    def host_name(self) -> str:
        return self._ports.host_name

    def post(self, event: CellEvent) -> None:
        self._events.put(event)

    def cancel(self, reason: str) -> None:
        self.post(CancelRequested(reason))

    def run(self) -> CellResult:
        """Block until the cell is done; never raises for the candidate's or the host's trouble."""
        self._started_at = self._clock()
        try:
            self.step(Begin())
            while self._context.state is not CellState.DONE:
                self.step(self._events.get())
        except Exception as exc:  # noqa: BLE001 - a bug of ours must end the cell, not hang the run
            self._abandon(f"internal error ({type(exc).__name__}): {exc}")
        return self._result()

    def _abandon(self, reason: str) -> None:
        """The loop itself broke: keep what evidence there is, remove the VM, end as infra_error."""
        self._timers.cancel_all()
        context = self._context
        leaving = (StopProbe(), CancelStep(), CollectEvidence(CellOutcome.INFRA_ERROR, reason), Teardown())
        for command in leaving:
            try:
                self._dispatch(command)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                self._evidence.warnings.append(f"{type(command).__name__}: {exc}")
        self._context = replace(
            context, state=CellState.DONE, outcome=CellOutcome.INFRA_ERROR, reason=reason, retryable=True
        )

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
        now = self._clock()
        if after.installed and not before.installed:
            self._installed_at = now
        if after.outcome is not None and before.outcome is None:
            self._ended_at = now
        if before.phase != after.phase:
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
                self.post(InfraFailed(f"{_describe_command(command)} failed: {kind}{exc}"))
        if isinstance(command, Teardown):
            self.post(TornDown())

    def _dispatch(self, command: CellCommand) -> None:  # noqa: PLR0912 - one case per command
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
            case RunProbe(boot=boot, health_check=health_check):
                self._ports.start_health_probe(boot, health_check)
            case StopProbe():
                self._ports.stop_probe()
            case RunStep(step=step):
                self._ports.start_step(step)
            case CancelStep():
                self._ports.cancel_step()
            case RequestReboot(boot=boot):
                self._ports.request_reboot(boot)
            case InjectNmi():
                self._ports.inject_nmi()
            case ResetGuest():
                self._ports.reset_guest()
            case Reconnect():
                self._ports.start_reconnect()
            case CollectEvidence(outcome=outcome, reason=reason):
                self._timers.cancel_all()
                evidence = self._ports.collect_evidence(outcome, reason, self._summary(outcome, reason))
                evidence.warnings = self._evidence.warnings + evidence.warnings
                self._evidence = evidence
            case Teardown():
                self._ports.teardown()

    def _seconds_after_install(self) -> float | None:
        if self._installed_at is None or self._ended_at is None:
            return None
        return round(self._ended_at - self._installed_at, 1)

    def _summary(self, outcome: CellOutcome, reason: str) -> dict[str, Any]:
        context = self._context
        return {
            "cell_id": self.plan.cell_id,
            "attempt": self.plan.attempt,
            "image": self.plan.image.name,
            "kernel": self.plan.image.kernel,
            "outcome": str(outcome),
            "reason": reason,
            "boot": context.boot,
            "healthy_boots": list(context.healthy_boots),
            "unexpected_resets": context.unexpected_resets,
            "seconds_after_install": self._seconds_after_install(),
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
            attempt=self.plan.attempt,
            observed=context.observed,
            control_of=self.plan.control_of,
            expected_outcome=_expected(self.plan),
            retryable=context.retryable and _expected(self.plan) is None,
            seconds_after_install=self._seconds_after_install(),
        )


def _expected(plan: CellPlan) -> CellOutcome | None:
    declared = plan.image.expected_outcome
    return CellOutcome(declared) if declared else None


def _describe_command(command: CellCommand) -> str:
    names = {
        "Provision": "provisioning the domain",
        "ProbeReadiness": "starting the readiness probe",
        "RunProbe": "starting the health probe",
        "RunStep": "starting the install step",
        "RequestReboot": "asking the guest to reboot",
        "InjectNmi": "injecting an NMI",
        "ResetGuest": "resetting the crashed guest",
        "Reconnect": "reconnecting to the host",
    }
    return names.get(type(command).__name__, type(command).__name__)
