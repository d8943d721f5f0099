"""The life of one cell as a pure state machine: ``advance(context, event) -> Transition``.

The journey: provision → boot 0 ready and stable → install steps (co-installed products, then
the candidate) → stable again → reboot k times, each boot ready and stable → passed.

Rules that decide outcomes:
- the hypervisor reporting a crash, at any point after provisioning, is ``crashed``;
- a reset the machine did not ask for is counted (resets within ``RESET_BURST_SECONDS`` of each
  other are one reset); ``boot_loop_after`` of them without the
  guest becoming ready is ``boot_loop``; if the guest comes back ready after one, it is
  ``crashed`` (it went down on its own: that is what the console shows);
- no readiness answer before the deadline is ``hung`` (``boot_loop`` if resets were seen), and so
  is a guest that stops answering while a step runs, with no crash or reset reported;
- an install step failing is ``install_failed`` when the candidate is to blame, else ``infra_error``;
- passing needs every boot ready and stable after the candidate was installed.

Readiness is confirmed by a boot mark (the guest's boot id) that differs from the last one seen,
so a guest that never went down cannot pass for one that rebooted.
"""

from dataclasses import dataclass, replace

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
    DomainCrashed,
    DomainReset,
    DomainStopped,
    GuestAnswered,
    GuestSilent,
    InfraFailed,
    Provisioned,
    StepFinished,
    Timer,
    TimerFired,
    TornDown,
)
from orchestrator.core.outcomes import Blame, CellOutcome, CellState
from orchestrator.core.plan import CellPlan, InstallStep, Timeouts

RESET_BURST_SECONDS = 2.0
"""Resets closer together than this are one reset: a reboot resets the machine more than once."""

_RUNNING = frozenset({CellState.PROVISIONING, CellState.BOOTING, CellState.STABILIZING, CellState.INSTALLING})


@dataclass(frozen=True)
class CellContext:
    """Everything the machine remembers about one cell."""

    state: CellState
    reboots: int
    boot_loop_after: int
    timeouts: Timeouts
    steps_left: tuple[InstallStep, ...]
    boot: int = 0  # 0 is the first boot; k is the boot after the k-th requested reboot
    boot_mark: str | None = None  # mark of the last boot that answered the probe
    installed: bool = False  # every install step succeeded
    awaiting_reset: bool = False  # a reboot was requested and its reset not yet seen
    unexpected_resets: int = 0  # resets nobody asked for since the guest was last ready
    last_reset_at: float | None = None  # when the last reset (of any kind) was seen
    current_step: InstallStep | None = None
    outcome: CellOutcome | None = None
    reason: str = ""

    @property
    def phase(self) -> str:
        """What the cell is doing, for people."""
        boots = self.reboots + 1
        match self.state:
            case CellState.BOOTING:
                return f"boot {self.boot + 1}/{boots}: waiting for readiness"
            case CellState.STABILIZING if self.installed and self.boot == 0:
                return f"boot 1/{boots}: stability window after install"
            case CellState.STABILIZING:
                return f"boot {self.boot + 1}/{boots}: stability window"
            case CellState.INSTALLING:
                return str(self.current_step)
            case CellState.CLEANING_UP | CellState.DONE:
                return str(self.outcome)
            case _:
                return str(self.state)


@dataclass(frozen=True)
class Transition:
    """The machine's answer to one event."""

    context: CellContext
    commands: tuple[CellCommand, ...] = ()

    @property
    def state(self) -> CellState:
        return self.context.state


def initial_context(plan: CellPlan) -> CellContext:
    return CellContext(
        state=CellState.PENDING,
        reboots=plan.reboots,
        boot_loop_after=plan.boot_loop_after,
        timeouts=plan.timeouts,
        steps_left=plan.steps,
    )


def advance(context: CellContext, event: CellEvent) -> Transition:
    """Apply one event. Events that mean nothing in the current state leave it unchanged."""
    if context.state is CellState.DONE:
        return Transition(context)
    if context.state is CellState.CLEANING_UP:
        if isinstance(event, TornDown):
            return Transition(replace(context, state=CellState.DONE))
        return Transition(context)
    if context.state is CellState.PENDING:
        return _pending(context, event)
    return _running(context, event)


def _pending(context: CellContext, event: CellEvent) -> Transition:
    match event:
        case Begin():
            return Transition(replace(context, state=CellState.PROVISIONING), (Provision(),))
        case CancelRequested(reason=reason):
            # Nothing exists yet: no evidence to keep, nothing to tear down.
            return Transition(
                replace(context, state=CellState.DONE, outcome=CellOutcome.CANCELED, reason=reason)
            )
    return Transition(context)


def _running(context: CellContext, event: CellEvent) -> Transition:
    """Events that end or disturb a cell whatever it is doing, then the ones each state expects."""
    match event:
        case DomainCrashed(detail=detail):
            return _finish(context, CellOutcome.CRASHED, f"the hypervisor reported a guest crash ({detail})")
        case DomainReset(at=at):
            if (
                at is not None
                and context.last_reset_at is not None
                and at - context.last_reset_at < RESET_BURST_SECONDS
            ):
                return Transition(replace(context, last_reset_at=at))  # the same reset, seen again
            return _on_reset(replace(context, last_reset_at=at))
        case DomainStopped(detail=detail, guest_initiated=True):
            return _finish(context, CellOutcome.CRASHED, f"the guest stopped on its own ({detail})")
        case DomainStopped(detail=detail):
            return _finish(context, CellOutcome.INFRA_ERROR, f"the domain stopped ({detail})")
        case InfraFailed(detail=detail):
            return _finish(context, CellOutcome.INFRA_ERROR, detail)
        case CancelRequested(reason=reason):
            return _finish(context, CellOutcome.CANCELED, reason)
    return _expected(context, event)


def _expected(context: CellContext, event: CellEvent) -> Transition:
    match context.state, event:
        case CellState.PROVISIONING, Provisioned():
            return _await_boot(context, arm_deadline=True)
        case CellState.BOOTING, GuestAnswered(boot_mark=mark) if mark != context.boot_mark:
            return _on_answer(context, mark)
        case CellState.BOOTING, TimerFired(timer=Timer.READY):
            return _on_ready_deadline(context)
        case CellState.STABILIZING, TimerFired(timer=Timer.STABILITY):
            return _after_stable(context)
        case CellState.INSTALLING, StepFinished() if event.step == context.current_step:
            return _after_step(context, event)
        case CellState.INSTALLING, GuestSilent(detail=detail):
            return _finish(
                context,
                CellOutcome.HUNG,
                f"the guest stopped answering during {context.current_step}: {detail}",
            )
    return Transition(context)


def _on_ready_deadline(context: CellContext) -> Transition:
    if context.unexpected_resets:
        return _finish(
            context,
            CellOutcome.BOOT_LOOP,
            f"reset {context.unexpected_resets} time(s) on its own and never became ready "
            f"within {context.timeouts.ready_s:g}s",
        )
    return _finish(
        context,
        CellOutcome.HUNG,
        f"boot {context.boot + 1} did not become ready within {context.timeouts.ready_s:g}s",
    )


def _await_boot(context: CellContext, *, arm_deadline: bool) -> Transition:
    commands: list[CellCommand] = []
    if arm_deadline:
        commands.append(ArmTimer(Timer.READY, context.timeouts.ready_s))
    commands.append(ProbeReadiness(context.boot, context.boot_mark))
    return Transition(replace(context, state=CellState.BOOTING), tuple(commands))


def _on_answer(context: CellContext, mark: str) -> Transition:
    answered = replace(context, boot_mark=mark, awaiting_reset=False)
    if context.unexpected_resets:
        return _finish(
            answered,
            CellOutcome.CRASHED,
            f"the guest reset on its own {context.unexpected_resets} time(s) before becoming ready again",
        )
    return Transition(
        replace(answered, state=CellState.STABILIZING),
        (CancelTimer(Timer.READY), ArmTimer(Timer.STABILITY, context.timeouts.stability_s)),
    )


def _after_stable(context: CellContext) -> Transition:
    if context.steps_left:
        step, *rest = context.steps_left
        return Transition(
            replace(context, state=CellState.INSTALLING, current_step=step, steps_left=tuple(rest)),
            (RunStep(step),),
        )
    if context.boot < context.reboots:
        rebooting = replace(context, boot=context.boot + 1, awaiting_reset=True)
        waiting = _await_boot(rebooting, arm_deadline=True)
        return Transition(waiting.context, (RequestReboot(rebooting.boot), *waiting.commands))
    return _finish(context, CellOutcome.PASSED, f"{context.reboots + 1} boot(s) ready and stable")


def _after_step(context: CellContext, event: StepFinished) -> Transition:
    if not event.ok:
        outcome = CellOutcome.INSTALL_FAILED if event.blame is Blame.CANDIDATE else CellOutcome.INFRA_ERROR
        return _finish(replace(context, current_step=None), outcome, f"{event.step} failed: {event.detail}")
    done = replace(context, current_step=None)
    if done.steps_left:
        return _after_stable(done)
    # What was just installed may take the guest down a moment later: it must stay up first.
    return Transition(
        replace(done, state=CellState.STABILIZING, installed=True),
        (ArmTimer(Timer.STABILITY, context.timeouts.stability_s),),
    )


def _on_reset(context: CellContext) -> Transition:
    if context.state is CellState.BOOTING and context.awaiting_reset:
        return Transition(replace(context, awaiting_reset=False))
    resets = context.unexpected_resets + 1
    counted = replace(context, unexpected_resets=resets)
    if resets >= context.boot_loop_after:
        return _finish(
            counted, CellOutcome.BOOT_LOOP, f"the guest reset {resets} time(s) without becoming ready"
        )
    if context.state is CellState.BOOTING:
        return Transition(counted)  # the probe and the deadline of this boot still run
    if context.state is CellState.PROVISIONING:
        return Transition(counted)
    leaving: tuple[CellCommand, ...] = (
        (CancelStep(),) if context.state is CellState.INSTALLING else (CancelTimer(Timer.STABILITY),)
    )
    waiting = _await_boot(replace(counted, current_step=None), arm_deadline=True)
    return Transition(waiting.context, leaving + waiting.commands)


def _finish(context: CellContext, outcome: CellOutcome, reason: str) -> Transition:
    stop: list[CellCommand] = [CancelTimer(Timer.READY), CancelTimer(Timer.STABILITY), StopProbe()]
    if context.state is CellState.INSTALLING:
        stop.append(CancelStep())
    return Transition(
        replace(context, state=CellState.CLEANING_UP, outcome=outcome, reason=reason),
        (*stop, CollectEvidence(outcome, reason), Teardown()),
    )


def is_running(state: CellState) -> bool:
    """True while the cell holds a VM on a host."""
    return state in _RUNNING or state is CellState.CLEANING_UP
