"""The life of one cell as a pure state machine: ``advance(context, event) -> Transition``.

The journey: provision → boot 0 ready, stable, probed (the baseline: nothing installed yet) →
each co-installed product installed, stable, probed, rebooted into → the candidate installed,
stable, probed → reboot k times, each boot ready, stable and probed → the last boot soaked and
probed again → passed.

Rules that decide outcomes:
- a pass needs every boot ready, stable for its window and probed healthy, and the soak window
  survived and probed healthy (``probe_rules.judge_probe`` says what healthy means);
- anything that goes wrong before the candidate is touched is the infrastructure's (an image that
  does not boot, an overloaded host): ``infra_error``, retryable, never the candidate's failure;
- the hypervisor reporting a crash is ``crashed``; a reset nobody asked for is counted (resets
  within ``RESET_BURST_SECONDS`` are one), ``boot_loop_after`` of them without readiness is
  ``boot_loop``, readiness after one is ``crashed``;
- a guest that goes silent (no readiness by the deadline, the agent stops answering) is ``hung``:
  first an NMI is injected so its console shows where it hung (``diagnosing``);
- a guest whose agent answers but whose sshd does not (a cut network), whose panic sysctls were
  turned off, whose kernel is newly tainted or printed a warning, or whose candidate health check
  fails is ``degraded``;
- an install step failing is ``install_failed`` when the candidate is to blame, else ``infra_error``;
  a step that runs out of time or loses the guest is settled by a probe (silent: hung; cut off:
  degraded; fine: the step itself failed);
- losing the libvirt connection re-reads the domain before deciding (crashed, or infra_error).

Readiness is confirmed by a boot mark (the guest's boot id) that differs from the last one seen,
so a guest that never went down cannot pass for one that rebooted.
"""

from dataclasses import dataclass, replace
from enum import StrEnum

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
    DomainCondition,
    DomainCrashed,
    DomainReset,
    DomainStopped,
    GuestAnswered,
    HostLost,
    HostReconnected,
    InfraFailed,
    ProbeFinished,
    Provisioned,
    StepFinished,
    Timer,
    TimerFired,
    TornDown,
)
from orchestrator.core.outcomes import CANDIDATE_FAILURES, Blame, CellOutcome, CellState
from orchestrator.core.plan import CellPlan, CrashPolicy, InstallStep, StepKind, Timeouts
from orchestrator.core.probe_rules import ProbeReport, Verdict, judge_probe

RESET_BURST_SECONDS = 2.0
"""Resets closer together than this are one reset: a reboot resets the machine more than once."""

_WINDOW_TIMERS = (Timer.READY, Timer.STABILITY, Timer.SOAK, Timer.PROBE, Timer.INSTALL)
_HELD_VM = frozenset(
    {
        CellState.PROVISIONING,
        CellState.BOOTING,
        CellState.STABILIZING,
        CellState.PROBING,
        CellState.INSTALLING,
        CellState.SOAKING,
        CellState.DIAGNOSING,
        CellState.RECONNECTING,
        CellState.CLEANING_UP,
    }
)


class ProbePurpose(StrEnum):
    """Why the guest is being probed."""

    WINDOW = "window"  # a boot's stability window ended
    SOAK = "soak"  # the soak window of the last boot ended
    STEP_TIMEOUT = "step_timeout"  # an install step ran out of time: is the guest still there?
    STEP_UNREACHABLE = "step_unreachable"  # the channel lost the guest mid-step: hung, cut off, or a glitch?


@dataclass(frozen=True)
class CellContext:
    """Everything the machine remembers about one cell."""

    state: CellState
    reboots: int
    boot_loop_after: int
    timeouts: Timeouts
    steps_left: tuple[InstallStep, ...]
    boots: int  # how many boots the journey has, for people
    deadline_s: float
    boot: int = 0  # 0 is the first boot; each reboot (requested or not) that became ready adds one
    boot_mark: str | None = None  # mark of the last boot that answered the readiness probe
    candidate_touched: bool = False  # the candidate step started: from here on failures are its own
    installed: bool = False  # every install step succeeded
    after_install: bool = False  # the current window follows an install step
    reboot_pending: bool = False  # a co-installed product was installed: boot into it before going on
    reboots_done: int = 0  # reboots since the candidate was installed
    healthy_boots: tuple[int, ...] = ()  # boots whose end-of-window probe found the guest healthy
    soak_passed: bool = False
    known_titles: frozenset[str] = frozenset()  # console reports already judged
    baseline_taint: int | None = None
    awaiting_reset: bool = False  # a reboot was requested and its reset not yet seen
    unexpected_resets: int = 0  # resets nobody asked for since the guest was last ready
    last_reset_at: float | None = None  # when the last reset (of any kind) was seen
    current_step: InstallStep | None = None
    activity: bool = False  # run the activity workload after install and after every later boot
    crash_policy: CrashPolicy = CrashPolicy.STOP
    crashes: int = 0  # crashes seen (and survived by a reset) under the observe policy
    crashed_boots: tuple[int, ...] = ()  # the boots those crashes ended
    counted_reports_pending: bool = False  # the console still shows counted crashes the probes saw not
    control: bool = False  # a control twin: no candidate; its own failures are judged as if it had one
    probe_purpose: ProbePurpose | None = None
    pending_outcome: CellOutcome | None = None  # decided, waiting for a probe or a crash dump
    pending_reason: str = ""
    outcome: CellOutcome | None = None
    observed: CellOutcome | None = None  # what the guest did, before blame (a crash at the baseline: crashed)
    reason: str = ""
    retryable: bool = False  # an infrastructure error worth another attempt on a fresh clone

    @property
    def phase(self) -> str:
        """What the cell is doing, for people. A boot after a crash under the observe policy is
        one the plan never had: it has no "of N", and says how many crashes came before it."""
        number = self.boot + 1
        boot = f"boot {number}/{self.boots}" if number <= self.boots else f"boot {number}"
        if self.crashes:
            boot += f" (after {self.crashes} crash{'es' if self.crashes > 1 else ''})"
        match self.state:
            case CellState.BOOTING:
                return f"{boot}: waiting for readiness"
            case CellState.STABILIZING:
                return f"{boot}: stability window" + (" after install" if self.after_install else "")
            case CellState.PROBING if self.current_step is not None:
                return f"{self.current_step}: checking on the guest"
            case CellState.PROBING:
                return f"{boot}: health probe" + (
                    " after the soak window" if self.probe_purpose == "soak" else ""
                )
            case CellState.SOAKING:
                return f"{boot}: soak window"
            case CellState.INSTALLING:
                return str(self.current_step)
            case CellState.DIAGNOSING:
                return "silent: forcing a crash dump (NMI)"
            case CellState.RECONNECTING:
                return "reconnecting to the host"
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
        boots=plan.boots,
        deadline_s=plan.deadline_s,
        activity=plan.activity,
        crash_policy=plan.crash_policy,
        control=plan.control_of is not None,
    )


def advance(context: CellContext, event: CellEvent) -> Transition:
    """Apply one event. Events that mean nothing in the current state leave it unchanged."""
    match context.state:
        case CellState.DONE:
            return Transition(context)
        case CellState.CLEANING_UP:
            if isinstance(event, TornDown):
                return Transition(replace(context, state=CellState.DONE))
            return Transition(context)
        case CellState.PENDING:
            return _pending(context, event)
        case CellState.DIAGNOSING:
            return _diagnosing(context, event)
        case CellState.RECONNECTING:
            return _reconnecting(context, event)
    return _running(context, event)


def _pending(context: CellContext, event: CellEvent) -> Transition:
    match event:
        case Begin():
            return Transition(
                replace(context, state=CellState.PROVISIONING),
                (ArmTimer(Timer.CELL, context.deadline_s), Provision()),
            )
        case CancelRequested(reason=reason):
            # Nothing exists yet: no evidence to keep, nothing to tear down.
            return Transition(
                replace(context, state=CellState.DONE, outcome=CellOutcome.CANCELED, reason=reason)
            )
    return Transition(context)


def _running(context: CellContext, event: CellEvent) -> Transition:
    """Events that end or disturb a cell whatever it is doing, then the ones each state expects."""
    match event:
        case DomainCrashed(detail=detail) if (
            context.crash_policy is CrashPolicy.OBSERVE and context.candidate_touched
        ):
            return _observe_crash(context, detail)
        case DomainCrashed(detail=detail):
            return _fail(context, CellOutcome.CRASHED, f"the hypervisor reported a guest crash ({detail})")
        case DomainReset(at=at):
            if (
                at is not None
                and context.last_reset_at is not None
                and at - context.last_reset_at < RESET_BURST_SECONDS
            ):
                return Transition(replace(context, last_reset_at=at))  # the same reset, seen again
            return _on_reset(replace(context, last_reset_at=at))
        case DomainStopped(detail=detail, guest_initiated=True):
            return _fail(context, CellOutcome.CRASHED, f"the guest stopped on its own ({detail})")
        case DomainStopped(detail=detail):
            return _finish(context, CellOutcome.INFRA_ERROR, f"the domain stopped ({detail})", retryable=True)
        case InfraFailed(detail=detail):
            return _finish(context, CellOutcome.INFRA_ERROR, detail, retryable=True)
        case HostLost(detail=detail):
            return Transition(
                replace(context, state=CellState.RECONNECTING, pending_reason=detail),
                (*_stop_everything(context), Reconnect()),
            )
        case CancelRequested(reason=reason):
            return _finish(context, CellOutcome.CANCELED, reason)
        case TimerFired(timer=Timer.CELL):
            return _over_deadline(context)
    return _expected(context, event)


def _expected(context: CellContext, event: CellEvent) -> Transition:
    match context.state, event:
        case CellState.PROVISIONING, Provisioned():
            return _await_boot(context)
        case CellState.BOOTING, GuestAnswered(boot_mark=mark) if mark != context.boot_mark:
            return _on_answer(context, mark)
        case CellState.BOOTING, TimerFired(timer=Timer.READY):
            return _on_ready_deadline(context)
        case CellState.STABILIZING, TimerFired(timer=Timer.STABILITY):
            return _probe(context, ProbePurpose.WINDOW)
        case CellState.SOAKING, TimerFired(timer=Timer.SOAK):
            return _probe(context, ProbePurpose.SOAK)
        case CellState.PROBING, ProbeFinished(report=report):
            return _on_probe(context, report)
        case CellState.PROBING, TimerFired(timer=Timer.PROBE):
            return _finish(
                context,
                CellOutcome.INFRA_ERROR,
                f"the health probe did not report back within {context.timeouts.probe_s:g}s",
                retryable=True,
            )
        case CellState.INSTALLING, StepFinished() if event.step == context.current_step:
            return _after_step(context, event)
        case CellState.INSTALLING, TimerFired(timer=Timer.INSTALL):
            step = context.current_step
            waiting = replace(
                context,
                pending_outcome=_step_failure(step, Blame.CANDIDATE),
                pending_reason=f"{step} did not finish within {context.timeouts.install_s:g}s",
            )
            return _probe(waiting, ProbePurpose.STEP_TIMEOUT, (CancelStep(),))
    return Transition(context)


# -- boots ------------------------------------------------------------------------------------


def _await_boot(context: CellContext) -> Transition:
    return Transition(
        replace(context, state=CellState.BOOTING),
        (ArmTimer(Timer.READY, context.timeouts.ready_s), ProbeReadiness(context.boot, context.boot_mark)),
    )


def _reboot(context: CellContext) -> Transition:
    rebooting = replace(context, boot=context.boot + 1, awaiting_reset=True, after_install=False)
    waiting = _await_boot(rebooting)
    return Transition(waiting.context, (RequestReboot(rebooting.boot), *waiting.commands))


def _on_answer(context: CellContext, mark: str) -> Transition:
    answered = replace(context, boot_mark=mark, awaiting_reset=False)
    if context.unexpected_resets:
        return _fail(
            answered,
            CellOutcome.CRASHED,
            f"the guest reset on its own {context.unexpected_resets} time(s) before becoming ready again",
        )
    if answered.installed and answered.activity:
        return _prefixed((CancelTimer(Timer.READY),), _start_step(answered, InstallStep.activity()))
    return Transition(
        replace(answered, state=CellState.STABILIZING),
        (CancelTimer(Timer.READY), ArmTimer(Timer.STABILITY, context.timeouts.stability_s)),
    )


def _observe_crash(context: CellContext, detail: str) -> Transition:
    """The observe policy: count the crash, reset the guest, and see whether it comes back."""
    crashes = context.crashes + 1
    counted = replace(context, crashes=crashes, crashed_boots=(*context.crashed_boots, context.boot))
    if crashes >= context.boot_loop_after:
        return _fail(
            counted,
            CellOutcome.BOOT_LOOP,
            f"boot_loop ({crashes} crashes in {crashes} boots; the guest was reset after each): {detail}",
        )
    # A crash inside the candidate's install step ended it: what it put on disk is what the machine
    # boots with from now on, so the boots after are the candidate's (health check included).
    in_install = context.current_step is not None and context.current_step.kind is StepKind.CANDIDATE
    rebooting = replace(
        counted,
        boot=context.boot + 1,
        awaiting_reset=True,
        after_install=False,
        current_step=None,
        probe_purpose=None,
        installed=context.installed or (in_install and not context.steps_left),
        counted_reports_pending=True,
    )
    waiting = _await_boot(rebooting)
    return Transition(waiting.context, (*_stop_everything(context), ResetGuest(), *waiting.commands))


def _on_ready_deadline(context: CellContext) -> Transition:
    if context.unexpected_resets:
        return _fail(
            context,
            CellOutcome.BOOT_LOOP,
            f"reset {context.unexpected_resets} time(s) on its own and never became ready "
            f"within {context.timeouts.ready_s:g}s",
        )
    return _silent(
        context, f"boot {context.boot + 1} did not become ready within {context.timeouts.ready_s:g}s"
    )


def _on_reset(context: CellContext) -> Transition:
    if context.state is CellState.BOOTING and context.awaiting_reset:
        return Transition(replace(context, awaiting_reset=False))
    resets = context.unexpected_resets + 1
    counted = replace(context, unexpected_resets=resets)
    if resets >= context.boot_loop_after:
        return _fail(
            counted, CellOutcome.BOOT_LOOP, f"the guest reset {resets} time(s) without becoming ready"
        )
    if context.state in (CellState.BOOTING, CellState.PROVISIONING):
        return Transition(counted)  # the readiness probe and the deadline of this boot still run
    waiting = _await_boot(replace(counted, current_step=None, probe_purpose=None, after_install=False))
    return Transition(waiting.context, _stop_everything(context) + waiting.commands)


# -- probes -----------------------------------------------------------------------------------


def _probe(context: CellContext, purpose: ProbePurpose, before: tuple[CellCommand, ...] = ()) -> Transition:
    health = context.installed and purpose in (ProbePurpose.WINDOW, ProbePurpose.SOAK)
    return Transition(
        replace(context, state=CellState.PROBING, probe_purpose=purpose),
        (
            *before,
            RunProbe(context.boot, health_check=health),
            ArmTimer(Timer.PROBE, context.timeouts.probe_s),
        ),
    )


def _on_probe(context: CellContext, report: ProbeReport) -> Transition:
    known = context.known_titles
    if context.counted_reports_pending:
        # The first probe after an observe reset: the console's fatal reports so far are the
        # crashes already counted (each one panicked the guest), not news about this boot.
        known |= {finding.title for finding in report.findings if finding.fatal}
    judgement = judge_probe(
        report,
        expected_mark=context.boot_mark,
        baseline=not context.candidate_touched,
        known_titles=known,
        baseline_taint=context.baseline_taint,
    )
    judged = replace(
        context,
        known_titles=judgement.known_titles,
        baseline_taint=judgement.baseline_taint,
        counted_reports_pending=False,
    )
    stop_timer = (CancelTimer(Timer.PROBE),)
    if judgement.verdict is Verdict.SILENT:
        return _silent(judged, judgement.reason)
    if judgement.verdict is Verdict.FAILED:
        assert judgement.outcome is not None
        return _fail(judged, judgement.outcome, judgement.reason)
    match context.probe_purpose:
        case ProbePurpose.WINDOW:
            healthy = replace(judged, healthy_boots=(*judged.healthy_boots, judged.boot))
            return _prefixed(stop_timer, _next(healthy))
        case ProbePurpose.SOAK:
            return _pass(replace(judged, soak_passed=True))
        case ProbePurpose.STEP_TIMEOUT:
            # The guest is fine: the step itself did not finish.
            return _fail(judged, judged.pending_outcome or CellOutcome.INFRA_ERROR, judged.pending_reason)
    return _finish(
        judged,
        CellOutcome.INFRA_ERROR,
        f"{judged.current_step}: the guest dropped off mid-step ({judged.pending_reason}) but answers again",
        retryable=True,
    )


def _next(context: CellContext) -> Transition:
    """After a boot was probed healthy: boot into a product, install the next step, reboot, or soak."""
    if context.reboot_pending:
        return _reboot(replace(context, reboot_pending=False))
    if context.steps_left:
        step, *rest = context.steps_left
        return _start_step(replace(context, steps_left=tuple(rest)), step)
    if context.control and not context.candidate_touched:
        # A control twin reached the point where the candidate would go in: from here on its
        # failures are judged as a candidate's would be (the run then blames the image instead).
        context = replace(context, candidate_touched=True, installed=True)
    if context.reboots_done < context.reboots:
        return _reboot(replace(context, reboots_done=context.reboots_done + 1))
    return Transition(
        replace(context, state=CellState.SOAKING), (ArmTimer(Timer.SOAK, context.timeouts.soak_s),)
    )


def _start_step(context: CellContext, step: InstallStep) -> Transition:
    return Transition(
        replace(
            context,
            state=CellState.INSTALLING,
            current_step=step,
            candidate_touched=context.candidate_touched or step.kind is StepKind.CANDIDATE,
        ),
        (RunStep(step), ArmTimer(Timer.INSTALL, context.timeouts.install_s)),
    )


def _pass(context: CellContext) -> Transition:
    every_boot = set(range(context.boot + 1)) - set(context.crashed_boots)
    if not (context.soak_passed and context.installed and every_boot <= set(context.healthy_boots)):
        # Unreachable by construction; if a change ever makes it reachable, it must not pass.
        return _finish(context, CellOutcome.INFRA_ERROR, "internal error: a pass without every probe")
    if context.crashes:
        return _finish(
            context,
            CellOutcome.CRASHED,
            f"recovered after {context.crashes} crash(es): the guest crashed, was reset, and then "
            "stayed up and healthy",
        )
    return _finish(
        context,
        CellOutcome.PASSED,
        f"{context.boot + 1} boot(s) ready and probed healthy, the last one soaked "
        f"{context.timeouts.soak_s:g}s",
    )


# -- install steps ----------------------------------------------------------------------------


def _step_failure(step: InstallStep | None, blame: Blame) -> CellOutcome:
    """Only the candidate's own installer failing is the candidate's failure; the activity
    workload failing once the candidate is in means the machine no longer does what users do."""
    if step is not None and step.kind is StepKind.CANDIDATE and blame is Blame.CANDIDATE:
        return CellOutcome.INSTALL_FAILED
    if step is not None and step.kind is StepKind.ACTIVITY and blame is Blame.CANDIDATE:
        return CellOutcome.DEGRADED
    return CellOutcome.INFRA_ERROR


def _after_step(context: CellContext, event: StepFinished) -> Transition:
    stop_timer = (CancelTimer(Timer.INSTALL),)
    if event.ok:
        installing = event.step.kind is not StepKind.ACTIVITY
        done = replace(
            context,
            state=CellState.STABILIZING,
            current_step=None,
            installed=context.installed or not context.steps_left,
            after_install=installing,
            reboot_pending=event.step.kind is StepKind.PRODUCT,
        )
        if event.step.kind is StepKind.CANDIDATE and context.activity:
            return _prefixed(stop_timer, _start_step(done, InstallStep.activity()))
        return Transition(done, (*stop_timer, ArmTimer(Timer.STABILITY, context.timeouts.stability_s)))
    if event.unreachable:
        return _probe(
            replace(context, pending_reason=event.detail), ProbePurpose.STEP_UNREACHABLE, stop_timer
        )
    outcome = _step_failure(event.step, event.blame)
    if event.step.kind is StepKind.PRODUCT and event.blame is Blame.CANDIDATE:
        reason = f"{event.step} failed (a co-installed product, not the candidate): {event.detail}"
    elif event.step.kind is StepKind.ACTIVITY and event.blame is Blame.CANDIDATE:
        reason = f"the activity workload failed with the candidate in: {event.detail}"
    else:
        reason = f"{event.step} failed: {event.detail}"
    retryable = event.blame is Blame.INFRASTRUCTURE
    return _finish(replace(context, current_step=None), outcome, reason, retryable=retryable)


# -- hangs, connection loss, deadlines --------------------------------------------------------


def _silent(context: CellContext, reason: str) -> Transition:
    """The guest went silent. Before the candidate: the image's trouble. After: a hang, first
    turned into a crash dump with an NMI so the console shows where it hung."""
    if not context.candidate_touched:
        return _fail(context, CellOutcome.HUNG, reason)
    return Transition(
        replace(
            context,
            state=CellState.DIAGNOSING,
            pending_outcome=CellOutcome.HUNG,
            pending_reason=reason,
            current_step=None,
        ),
        (*_stop_everything(context), InjectNmi(), ArmTimer(Timer.NMI_GRACE, context.timeouts.nmi_grace_s)),
    )


def _diagnosing(context: CellContext, event: CellEvent) -> Transition:
    outcome = context.pending_outcome or CellOutcome.HUNG
    match event:
        case DomainCrashed():
            return _finish(
                context, outcome, f"{context.pending_reason}; the NMI made it panic and dump its stack"
            )
        case TimerFired(timer=Timer.NMI_GRACE | Timer.CELL):
            return _finish(context, outcome, f"{context.pending_reason}; no crash dump followed the NMI")
        case InfraFailed(detail=detail):
            return _finish(context, outcome, f"{context.pending_reason}; the NMI could not be sent: {detail}")
        case DomainReset() | DomainStopped() | HostLost():
            return _finish(context, outcome, context.pending_reason)
        case CancelRequested(reason=reason):
            return _finish(context, CellOutcome.CANCELED, reason)
    return Transition(context)


def _reconnecting(context: CellContext, event: CellEvent) -> Transition:
    lost = context.pending_reason
    match event:
        case HostReconnected(condition=DomainCondition.CRASHED, detail=detail):
            return _fail(
                context,
                CellOutcome.CRASHED,
                f"the guest crashed while the libvirt connection was down ({lost}; "
                f"found on reconnecting: {detail})",
            )
        case DomainCrashed(detail=detail):
            return _fail(context, CellOutcome.CRASHED, f"the hypervisor reported a guest crash ({detail})")
        case HostReconnected(condition=condition):
            return _finish(
                context,
                CellOutcome.INFRA_ERROR,
                f"lost the connection to the libvirt host ({lost}); on reconnecting the domain was "
                f"{condition}: what happened in between is unknown",
                retryable=True,
            )
        case InfraFailed(detail=detail):
            return _finish(
                context,
                CellOutcome.INFRA_ERROR,
                f"lost the connection to the libvirt host ({lost}): {detail}",
                retryable=True,
            )
        case CancelRequested(reason=reason):
            return _finish(context, CellOutcome.CANCELED, reason)
        case TimerFired(timer=Timer.CELL):
            return _over_deadline(context)
    return Transition(context)


def _over_deadline(context: CellContext) -> Transition:
    return _finish(
        context,
        CellOutcome.INFRA_ERROR,
        f"the cell took longer than its overall deadline ({context.deadline_s:g}s) while {context.phase}",
        retryable=True,
    )


# -- endings ----------------------------------------------------------------------------------


def _stop_everything(context: CellContext) -> tuple[CellCommand, ...]:
    """Commands that silence every window, probe and step (the cell deadline stays armed)."""
    stop: list[CellCommand] = [CancelTimer(timer) for timer in _WINDOW_TIMERS]
    stop.append(StopProbe())
    if context.current_step is not None:
        stop.append(CancelStep())
    return tuple(stop)


def _fail(context: CellContext, outcome: CellOutcome, reason: str) -> Transition:
    """A failure the candidate is to blame for, once it was touched; before, the environment's."""
    observed = replace(context, observed=outcome)
    if outcome in CANDIDATE_FAILURES and not context.candidate_touched:
        return _finish(
            observed, CellOutcome.INFRA_ERROR, f"before the candidate was installed: {reason}", retryable=True
        )
    return _finish(observed, outcome, reason)


def _finish(
    context: CellContext, outcome: CellOutcome, reason: str, *, retryable: bool = False
) -> Transition:
    if context.crashes and outcome not in (CellOutcome.CRASHED, CellOutcome.BOOT_LOOP):
        # The observe policy saw the candidate crash the guest: whatever ends the cell later (a
        # failing probe, a hang, a cancel, the host) must not hide that crash from the report.
        reason = f"{_after_crashes(context.crashes, outcome)}: {reason}"
        context = replace(context, observed=CellOutcome.CRASHED)
        outcome, retryable = CellOutcome.CRASHED, False
    commands = (
        *_stop_everything(context),
        CancelTimer(Timer.NMI_GRACE),
        CancelTimer(Timer.CELL),
        CollectEvidence(outcome, reason),
        Teardown(),
    )
    return Transition(
        replace(
            context,
            state=CellState.CLEANING_UP,
            outcome=outcome,
            observed=context.observed or outcome,
            reason=reason,
            retryable=retryable and outcome is CellOutcome.INFRA_ERROR,
        ),
        commands,
    )


def _after_crashes(crashes: int, then: CellOutcome) -> str:
    if then is CellOutcome.DEGRADED:  # the guest came back up, but not healthy
        return f"recovered after {crashes} crash(es), but degraded"
    return f"crashed {crashes} time(s) and was reset after each, then {then}"


def _prefixed(commands: tuple[CellCommand, ...], transition: Transition) -> Transition:
    return Transition(transition.context, commands + transition.commands)


def holds_vm(state: CellState) -> bool:
    """True while the cell holds a VM on a host."""
    return state in _HELD_VM
