"""The cell state machine, event by event: ``advance(context, event) -> Transition``."""

import random

import pytest

from orchestrator.core.cell_commands import (
    ArmTimer,
    CancelStep,
    CancelTimer,
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
from orchestrator.core.cell_machine import advance, initial_context, is_running
from orchestrator.core.outcomes import Blame, CellOutcome, CellState
from orchestrator.core.plan import InstallStep

pytestmark = pytest.mark.unit

CANDIDATE = InstallStep.candidate()
DLP = InstallStep.product("dlp")
AV = InstallStep.product("av")

READY = TimerFired(Timer.READY)
STABLE = TimerFired(Timer.STABILITY)

# What stops a cell, whatever its state: the tail every finishing transition carries.
STOP = (CancelTimer(Timer.READY), CancelTimer(Timer.STABILITY), StopProbe())

# Event prefixes that bring a default plan (one reboot, the candidate as the only step) to
# every state a running cell can be in.
TO_PROVISIONING = [Begin()]
TO_BOOTING = [*TO_PROVISIONING, Provisioned()]
TO_STABILIZING = [*TO_BOOTING, GuestAnswered("m0")]
TO_INSTALLING = [*TO_STABILIZING, STABLE]
TO_INSTALLED = [*TO_INSTALLING, StepFinished(CANDIDATE, ok=True)]
TO_REBOOTING = [*TO_INSTALLED, STABLE]  # boot 2 requested, its reset not yet seen
TO_REBOOTED = [*TO_REBOOTING, DomainReset()]  # boot 2 reset as asked, not yet ready
TO_LAST_STABILIZING = [*TO_REBOOTED, GuestAnswered("m1")]

RUNNING = {
    "provisioning": (TO_PROVISIONING, CellState.PROVISIONING),
    "booting": (TO_BOOTING, CellState.BOOTING),
    "stabilizing": (TO_STABILIZING, CellState.STABILIZING),
    "installing": (TO_INSTALLING, CellState.INSTALLING),
    "stabilizing-after-install": (TO_INSTALLED, CellState.STABILIZING),
    "rebooting": (TO_REBOOTING, CellState.BOOTING),
    "rebooted": (TO_REBOOTED, CellState.BOOTING),
    "last-stabilizing": (TO_LAST_STABILIZING, CellState.STABILIZING),
}


def drive(events, plan):
    """Feed events from PENDING; return the last context and every command produced."""
    context = initial_context(plan)
    commands = []
    for event in events:
        transition = advance(context, event)
        context = transition.context
        commands.extend(transition.commands)
    return context, commands


def at(name, plan):
    prefix, state = RUNNING[name]
    context, _ = drive(prefix, plan)
    assert context.state is state, f"prefix {name} should reach {state}, reached {context.state}"
    return context


def assert_finished(transition, outcome):
    """The cell stopped with ``outcome``: evidence, then teardown, last."""
    assert transition.state is CellState.CLEANING_UP
    assert transition.context.outcome is outcome
    assert transition.context.reason
    assert transition.commands[-2:] == (CollectEvidence(outcome, transition.context.reason), Teardown())
    assert transition.commands[:3] == STOP


# -- the happy path -------------------------------------------------------------------------------


def test_happy_path_transcript_with_one_reboot(make_plan):
    plan = make_plan(reboots=1, ready_s=300, stability_s=15)
    transcript = [
        (Begin(), CellState.PROVISIONING, (Provision(),)),
        (Provisioned(), CellState.BOOTING, (ArmTimer(Timer.READY, 300), ProbeReadiness(0, None))),
        (
            GuestAnswered("m0"),
            CellState.STABILIZING,
            (CancelTimer(Timer.READY), ArmTimer(Timer.STABILITY, 15)),
        ),
        (STABLE, CellState.INSTALLING, (RunStep(CANDIDATE),)),
        (StepFinished(CANDIDATE, ok=True), CellState.STABILIZING, (ArmTimer(Timer.STABILITY, 15),)),
        (
            STABLE,
            CellState.BOOTING,
            (RequestReboot(1), ArmTimer(Timer.READY, 300), ProbeReadiness(1, "m0")),
        ),
        (DomainReset(), CellState.BOOTING, ()),  # the reset we asked for
        (
            GuestAnswered("m1"),
            CellState.STABILIZING,
            (CancelTimer(Timer.READY), ArmTimer(Timer.STABILITY, 15)),
        ),
        (
            STABLE,
            CellState.CLEANING_UP,
            (*STOP, CollectEvidence(CellOutcome.PASSED, "2 boot(s) ready and stable"), Teardown()),
        ),
        (TornDown(), CellState.DONE, ()),
    ]
    context = initial_context(plan)
    for number, (event, state, commands) in enumerate(transcript, start=1):
        transition = advance(context, event)
        assert (transition.state, transition.commands) == (state, commands), f"event {number}: {event}"
        context = transition.context
    assert context.outcome is CellOutcome.PASSED
    assert context.installed
    assert context.boot == 1
    assert context.boot_mark == "m1"
    assert context.unexpected_resets == 0


@pytest.mark.parametrize("reboots", [0, 1, 2, 5])
def test_passes_after_exactly_the_planned_reboots(reboots, make_plan):
    events = [*TO_INSTALLED]
    for boot in range(1, reboots + 1):
        events += [STABLE, DomainReset(), GuestAnswered(f"m{boot}")]
    context, commands = drive([*events, STABLE], make_plan(reboots=reboots))
    assert context.state is CellState.CLEANING_UP
    assert context.outcome is CellOutcome.PASSED
    assert context.reason == f"{reboots + 1} boot(s) ready and stable"
    assert [c.boot for c in commands if isinstance(c, RequestReboot)] == list(range(1, reboots + 1))
    probes = [c for c in commands if isinstance(c, ProbeReadiness)]
    assert probes == [
        ProbeReadiness(boot, None if boot == 0 else f"m{boot - 1}") for boot in range(reboots + 1)
    ]


def test_without_reboots_the_candidate_passes_once_stable_after_install(make_plan):
    context, commands = drive(TO_INSTALLED, make_plan(reboots=0))
    transition = advance(context, STABLE)
    assert_finished(transition, CellOutcome.PASSED)
    assert not any(isinstance(c, RequestReboot) for c in (*commands, *transition.commands))


def test_install_steps_run_in_order_products_first_without_a_window_between(make_plan):
    plan = make_plan(products=("dlp", "av"), reboots=0)
    context, _ = drive(TO_STABILIZING, plan)
    transcript = [
        (STABLE, CellState.INSTALLING, (RunStep(DLP),), DLP),
        (StepFinished(DLP, ok=True), CellState.INSTALLING, (RunStep(AV),), AV),
        (StepFinished(AV, ok=True), CellState.INSTALLING, (RunStep(CANDIDATE),), CANDIDATE),
        (StepFinished(CANDIDATE, ok=True), CellState.STABILIZING, (ArmTimer(Timer.STABILITY, 15),), None),
    ]
    for event, state, commands, current in transcript:
        transition = advance(context, event)
        assert (transition.state, transition.commands, transition.context.current_step) == (
            state,
            commands,
            current,
        ), event
        context = transition.context
    assert context.installed
    assert context.steps_left == ()


def test_a_finished_step_that_is_not_the_current_one_is_ignored(make_plan):
    context = at("installing", make_plan(products=("dlp",)))
    assert context.current_step == DLP
    transition = advance(context, StepFinished(CANDIDATE, ok=True))
    assert transition.context == context
    assert transition.commands == ()


# -- crashes, hangs, loops --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RUNNING))
@pytest.mark.parametrize("detail", ["panicked", "crashloaded"])
def test_a_crash_in_any_running_state_is_crashed(name, detail, plan):
    context = at(name, plan)
    transition = advance(context, DomainCrashed(detail))
    assert_finished(transition, CellOutcome.CRASHED)
    assert detail in transition.context.reason
    assert (CancelStep() in transition.commands) is (context.state is CellState.INSTALLING)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("booting", "boot 1 did not become ready within 300s"),
        ("rebooting", "boot 2 did not become ready within 300s"),
        ("rebooted", "boot 2 did not become ready within 300s"),
    ],
)
def test_no_readiness_before_the_deadline_is_hung(name, reason, plan):
    transition = advance(at(name, plan), READY)
    assert_finished(transition, CellOutcome.HUNG)
    assert transition.context.reason == reason


@pytest.mark.parametrize("name", ["booting", "rebooted"])
def test_deadline_after_unexpected_resets_is_a_boot_loop(name, plan):
    context = at(name, plan)
    for _ in range(2):
        context = advance(context, DomainReset()).context
    assert context.state is CellState.BOOTING
    assert context.unexpected_resets == 2
    transition = advance(context, READY)
    assert_finished(transition, CellOutcome.BOOT_LOOP)
    assert "reset 2 time(s) on its own" in transition.context.reason


@pytest.mark.parametrize("boot_loop_after", [1, 2, 3, 5])
@pytest.mark.parametrize("name", ["booting", "stabilizing", "installing", "rebooted"])
def test_unexpected_resets_reaching_the_limit_are_a_boot_loop(name, boot_loop_after, make_plan):
    context = at(name, make_plan(boot_loop_after=boot_loop_after))
    for count in range(1, boot_loop_after):
        transition = advance(context, DomainReset())
        assert transition.state is CellState.BOOTING, f"reset {count} of {boot_loop_after}"
        context = transition.context
    transition = advance(context, DomainReset())
    assert_finished(transition, CellOutcome.BOOT_LOOP)
    assert transition.context.unexpected_resets == boot_loop_after
    assert f"reset {boot_loop_after} time(s)" in transition.context.reason


def test_the_requested_reset_is_not_counted_but_a_second_one_is(plan):
    context = at("rebooting", plan)
    first = advance(context, DomainReset())
    assert (first.state, first.commands, first.context.unexpected_resets) == (CellState.BOOTING, (), 0)
    assert not first.context.awaiting_reset
    second = advance(first.context, DomainReset())
    assert second.context.unexpected_resets == 1
    assert second.state is CellState.BOOTING


@pytest.mark.parametrize(
    ("name", "leaving"),
    [
        ("stabilizing", CancelTimer(Timer.STABILITY)),
        ("installing", CancelStep()),
        ("stabilizing-after-install", CancelTimer(Timer.STABILITY)),
        ("last-stabilizing", CancelTimer(Timer.STABILITY)),
    ],
)
def test_a_reset_while_up_waits_for_the_next_boot_then_a_recovery_is_crashed(name, leaving, plan):
    context = at(name, plan)
    reset = advance(context, DomainReset())
    assert reset.state is CellState.BOOTING
    assert reset.commands == (
        leaving,
        ArmTimer(Timer.READY, 300),
        ProbeReadiness(context.boot, context.boot_mark),
    )
    assert reset.context.current_step is None
    recovered = advance(reset.context, GuestAnswered("after-reset"))
    assert_finished(recovered, CellOutcome.CRASHED)
    assert "reset on its own 1 time(s)" in recovered.context.reason


def test_a_reset_while_booting_then_an_answer_is_crashed(plan):
    context = advance(at("booting", plan), DomainReset()).context
    assert context.unexpected_resets == 1
    transition = advance(context, GuestAnswered("m0"))
    assert_finished(transition, CellOutcome.CRASHED)


def test_a_reset_while_provisioning_is_counted(plan):
    transition = advance(at("provisioning", plan), DomainReset())
    assert transition.state is CellState.PROVISIONING
    assert transition.context.unexpected_resets == 1
    assert transition.commands == ()


@pytest.mark.parametrize("name", ["rebooting", "rebooted"])
def test_the_same_boot_mark_after_a_requested_reboot_is_ignored(name, plan):
    context = at(name, plan)
    stale = advance(context, GuestAnswered("m0"))  # the previous boot still answering
    assert stale.context == context
    assert stale.commands == ()
    fresh = advance(context, GuestAnswered("m1"))
    assert fresh.state is CellState.STABILIZING


def test_the_same_boot_mark_after_an_unexpected_reset_is_ignored(plan):
    context = advance(at("stabilizing", plan), DomainReset()).context
    assert advance(context, GuestAnswered("m0")).context == context


# -- install failures and silence ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blame", "outcome"),
    [
        (Blame.CANDIDATE, CellOutcome.INSTALL_FAILED),
        (Blame.INFRASTRUCTURE, CellOutcome.INFRA_ERROR),
        (Blame.CONFIGURATION, CellOutcome.INFRA_ERROR),
        (Blame.INTERNAL, CellOutcome.INFRA_ERROR),
    ],
)
@pytest.mark.parametrize("step", [DLP, CANDIDATE])
def test_a_failed_step_is_blamed(step, blame, outcome, make_plan):
    context, _ = drive([*TO_STABILIZING, STABLE], make_plan(products=("dlp",)))
    while context.current_step != step:
        context = advance(context, StepFinished(context.current_step, ok=True)).context
    transition = advance(context, StepFinished(step, ok=False, blame=blame, detail="exit 3"))
    assert_finished(transition, outcome)
    assert transition.context.reason == f"{step} failed: exit 3"
    assert transition.context.current_step is None
    assert not transition.context.installed


def test_guest_silent_while_installing_is_hung(plan):
    transition = advance(at("installing", plan), GuestSilent("ssh timed out"))
    assert_finished(transition, CellOutcome.HUNG)
    assert CancelStep() in transition.commands
    assert transition.context.reason == "the guest stopped answering during install candidate: ssh timed out"


@pytest.mark.parametrize("name", ["provisioning", "booting", "stabilizing", "rebooted"])
def test_guest_silent_outside_a_step_is_ignored(name, plan):
    context = at(name, plan)
    transition = advance(context, GuestSilent("quiet"))
    assert transition.context == context
    assert transition.commands == ()


# -- stops, infrastructure, cancel -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        (DomainStopped("shutdown", guest_initiated=True), CellOutcome.CRASHED),
        (DomainStopped("destroyed", guest_initiated=False), CellOutcome.INFRA_ERROR),
        (DomainStopped("failed", guest_initiated=False), CellOutcome.INFRA_ERROR),
        (InfraFailed("the guest agent channel closed"), CellOutcome.INFRA_ERROR),
        (CancelRequested("stopped by alice"), CellOutcome.CANCELED),
    ],
    ids=["guest-shutdown", "destroyed", "qemu-failed", "infra-failed", "cancel"],
)
@pytest.mark.parametrize("name", list(RUNNING))
def test_stops_infrastructure_and_cancel_in_every_running_state(name, event, outcome, plan):
    transition = advance(at(name, plan), event)
    assert_finished(transition, outcome)
    detail = getattr(event, "detail", None) or event.reason
    assert detail in transition.context.reason


def test_cancel_while_pending_is_done_without_commands(plan):
    context = initial_context(plan)
    transition = advance(context, CancelRequested("fail-fast: other cell crashed"))
    assert transition.state is CellState.DONE
    assert transition.context.outcome is CellOutcome.CANCELED
    assert transition.context.reason == "fail-fast: other cell crashed"
    assert transition.commands == ()


@pytest.mark.parametrize(
    "event",
    [Provisioned(), GuestAnswered("m0"), READY, STABLE, DomainCrashed("panicked"), DomainReset(), TornDown()],
)
def test_pending_ignores_everything_but_begin_and_cancel(event, plan):
    context = initial_context(plan)
    transition = advance(context, event)
    assert transition.context == context
    assert transition.commands == ()


# -- stale and late events ---------------------------------------------------------------------------

ALL_EVENTS = [
    Begin(),
    Provisioned(),
    GuestAnswered("late"),
    READY,
    STABLE,
    DomainCrashed("panicked"),
    DomainReset(),
    DomainStopped("shutdown", guest_initiated=True),
    DomainStopped("destroyed", guest_initiated=False),
    StepFinished(CANDIDATE, ok=False),
    GuestSilent("late"),
    InfraFailed("late"),
    CancelRequested("late"),
    TornDown(),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_done_ignores_every_event(event, plan):
    context, _ = drive([*TO_INSTALLING, DomainCrashed("panicked"), TornDown()], plan)
    assert context.state is CellState.DONE
    transition = advance(context, event)
    assert transition.context == context
    assert transition.commands == ()


@pytest.mark.parametrize(
    "event", [e for e in ALL_EVENTS if not isinstance(e, TornDown)], ids=lambda e: type(e).__name__
)
def test_cleaning_up_ignores_every_event_but_torn_down(event, plan):
    context, _ = drive([*TO_STABILIZING, InfraFailed("channel lost")], plan)
    assert context.state is CellState.CLEANING_UP
    transition = advance(context, event)
    assert transition.context == context
    assert transition.commands == ()
    done = advance(context, TornDown())
    assert done.state is CellState.DONE
    assert done.context.outcome is CellOutcome.INFRA_ERROR


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("booting", STABLE),
        ("rebooting", STABLE),
        ("rebooted", STABLE),
        ("stabilizing", READY),
        ("installing", READY),
        ("installing", STABLE),
        ("provisioning", READY),
        ("stabilizing", Provisioned()),
        ("stabilizing", GuestAnswered("m9")),
        ("installing", GuestAnswered("m9")),
    ],
)
def test_stale_events_leave_the_cell_unchanged(name, event, plan):
    context = at(name, plan)
    transition = advance(context, event)
    assert transition.context == context
    assert transition.commands == ()


# -- small pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "phase"),
    [
        ("provisioning", "provisioning"),
        ("booting", "boot 1/2: waiting for readiness"),
        ("stabilizing", "boot 1/2: stability window"),
        ("installing", "install candidate"),
        ("stabilizing-after-install", "boot 1/2: stability window after install"),
        ("rebooting", "boot 2/2: waiting for readiness"),
        ("last-stabilizing", "boot 2/2: stability window"),
    ],
)
def test_phase_tells_people_where_the_cell_is(name, phase, plan):
    assert at(name, plan).phase == phase


def test_phase_of_a_finished_cell_is_its_outcome(plan):
    context, _ = drive([*TO_BOOTING, READY], plan)
    assert context.phase == "hung"
    assert initial_context(plan).phase == "pending"


@pytest.mark.parametrize(
    ("state", "running"),
    [
        (CellState.PENDING, False),
        (CellState.PROVISIONING, True),
        (CellState.BOOTING, True),
        (CellState.STABILIZING, True),
        (CellState.INSTALLING, True),
        (CellState.CLEANING_UP, True),
        (CellState.DONE, False),
    ],
)
def test_is_running_while_the_cell_holds_a_vm(state, running):
    assert is_running(state) is running


# -- property: random event sequences ----------------------------------------------------------------


def _happy_event(context, rng):
    """What a healthy guest would most likely send next."""
    if context.state is CellState.BOOTING:
        return DomainReset() if context.awaiting_reset else GuestAnswered(f"fresh-{rng.randrange(10**9)}")
    if context.state is CellState.INSTALLING:  # installers fail now and then
        return StepFinished(context.current_step, ok=rng.random() < 0.9, blame=rng.choice(list(Blame)))
    following = {
        CellState.PENDING: Begin(),
        CellState.PROVISIONING: Provisioned(),
        CellState.STABILIZING: STABLE,
    }
    return following.get(context.state, TornDown())


def _any_event(rng, context, plan, marks):
    """Anything at all, stale or out of place included."""
    choices = [
        Begin,
        Provisioned,
        lambda: GuestAnswered(rng.choice(marks)),
        lambda: GuestAnswered(f"fresh-{rng.randrange(10**9)}"),
        lambda: READY,
        lambda: STABLE,
        lambda: DomainCrashed(rng.choice(["panicked", "crashloaded"])),
        DomainReset,
        lambda: DomainStopped("shutdown", guest_initiated=rng.random() < 0.5),
        lambda: StepFinished(
            rng.choice([*plan.steps, context.current_step or CANDIDATE]),
            ok=rng.random() < 0.5,
            blame=rng.choice(list(Blame)),
        ),
        lambda: GuestSilent("quiet"),
        lambda: InfraFailed("boom"),
        lambda: CancelRequested("stop"),
        TornDown,
    ]
    return rng.choice(choices)()


def test_random_event_sequences_keep_the_invariants(make_plan):
    outcomes = set()
    for seed in range(300):
        rng = random.Random(seed)
        plan = make_plan(
            products=tuple(rng.sample(["dlp", "av", "edr"], rng.randrange(3))),
            reboots=rng.randrange(3),
            boot_loop_after=rng.randrange(1, 4),
        )
        noise = rng.choice([0.02, 0.05, 0.1, 0.3])  # how often something other than health happens
        context = initial_context(plan)
        marks = ["m0"]
        finishing = []  # commands of the transition that left the running states
        after_finish = []  # commands produced once the outcome was known
        for _ in range(80):
            if rng.random() < noise:
                event = _any_event(rng, context, plan, marks)
            else:
                event = _happy_event(context, rng)
            transition = advance(context, event)
            before, context = context, transition.context
            if isinstance(event, GuestAnswered):
                marks.append(event.boot_mark)
            if before.state is CellState.DONE:
                assert context == before, f"seed {seed}: left DONE on {event}"
            if before.state in (CellState.CLEANING_UP, CellState.DONE):
                after_finish.extend(transition.commands)
                assert context.outcome == before.outcome, f"seed {seed}"
            elif context.state in (CellState.CLEANING_UP, CellState.DONE):
                finishing = list(transition.commands)
            if context.state in (CellState.CLEANING_UP, CellState.DONE):
                assert context.outcome is not None, f"seed {seed}: {context.state} without an outcome"
        assert after_finish == [], f"seed {seed}: commands after the outcome was known"
        if finishing:
            evidence = [c for c in finishing if isinstance(c, CollectEvidence)]
            teardowns = [c for c in finishing if isinstance(c, Teardown)]
            assert len(evidence) == 1, f"seed {seed}: {finishing}"
            assert len(teardowns) == 1, f"seed {seed}: {finishing}"
            assert finishing[-2:] == [evidence[0], Teardown()], f"seed {seed}: {finishing}"
            assert evidence[0].outcome is context.outcome
        if context.outcome is CellOutcome.PASSED:
            assert context.installed, f"seed {seed}: passed without the candidate installed"
            assert context.boot == plan.reboots, f"seed {seed}: passed before the last boot"
        outcomes.add(context.outcome)
    # The sequences must reach every ending for the invariants above to mean something.
    assert outcomes >= set(CellOutcome) - {CellOutcome.DEGRADED}, outcomes
