"""The cell state machine, event by event: ``advance(context, event) -> Transition``."""

from dataclasses import replace

import pytest
from hypothesis import event as observe
from hypothesis import given, note, settings
from hypothesis import strategies as st

from orchestrator.core.cell_commands import (
    ArmTimer,
    CancelStep,
    CancelTimer,
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
from orchestrator.core.cell_machine import advance, holds_vm, initial_context
from orchestrator.core.matrix import control_twin
from orchestrator.core.outcomes import Blame, CellOutcome, CellState
from orchestrator.core.plan import CrashPolicy, InstallStep
from orchestrator.core.probe_rules import REQUIRED_SYSCTLS, ConsoleFinding, ProbeReport

pytestmark = pytest.mark.unit

CANDIDATE = InstallStep.candidate()
DLP = InstallStep.product("dlp")

READY = TimerFired(Timer.READY)
STABLE = TimerFired(Timer.STABILITY)
SOAKED = TimerFired(Timer.SOAK)
PROBE_LATE = TimerFired(Timer.PROBE)
INSTALL_LATE = TimerFired(Timer.INSTALL)
NMI_GRACE = TimerFired(Timer.NMI_GRACE)
CELL_LATE = TimerFired(Timer.CELL)


def healthy(mark: str, **changes) -> ProbeFinished:
    facts = {
        "agent_ok": True,
        "boot_mark": mark,
        "ssh_ok": True,
        "sysctls": dict(REQUIRED_SYSCTLS),
        "tainted": 0,
        "health_rc": 0,
    }
    facts.update(changes)
    return ProbeFinished(ProbeReport(**facts))


# Event prefixes that bring the default plan (one reboot, the candidate as the only step) to
# every state a running cell can be in.
TO_PROVISIONING = [Begin()]
TO_BOOTING = [*TO_PROVISIONING, Provisioned()]
TO_STABILIZING = [*TO_BOOTING, GuestAnswered("m0")]
TO_BASELINE_PROBE = [*TO_STABILIZING, STABLE]
TO_INSTALLING = [*TO_BASELINE_PROBE, healthy("m0")]
TO_INSTALLED = [*TO_INSTALLING, StepFinished(CANDIDATE, ok=True)]
TO_INSTALLED_PROBE = [*TO_INSTALLED, STABLE]
TO_REBOOTING = [*TO_INSTALLED_PROBE, healthy("m0")]  # boot 2 requested, its reset not yet seen
TO_REBOOTED = [*TO_REBOOTING, DomainReset()]  # boot 2 reset as asked, not yet ready
TO_LAST_STABILIZING = [*TO_REBOOTED, GuestAnswered("m1")]
TO_LAST_PROBE = [*TO_LAST_STABILIZING, STABLE]
TO_SOAKING = [*TO_LAST_PROBE, healthy("m1")]
TO_SOAK_PROBE = [*TO_SOAKING, SOAKED]

BEFORE_CANDIDATE = {
    "provisioning": (TO_PROVISIONING, CellState.PROVISIONING),
    "booting": (TO_BOOTING, CellState.BOOTING),
    "stabilizing": (TO_STABILIZING, CellState.STABILIZING),
    "baseline-probe": (TO_BASELINE_PROBE, CellState.PROBING),
}
AFTER_CANDIDATE = {
    "installing": (TO_INSTALLING, CellState.INSTALLING),
    "stabilizing-after-install": (TO_INSTALLED, CellState.STABILIZING),
    "installed-probe": (TO_INSTALLED_PROBE, CellState.PROBING),
    "rebooting": (TO_REBOOTING, CellState.BOOTING),
    "rebooted": (TO_REBOOTED, CellState.BOOTING),
    "last-stabilizing": (TO_LAST_STABILIZING, CellState.STABILIZING),
    "last-probe": (TO_LAST_PROBE, CellState.PROBING),
    "soaking": (TO_SOAKING, CellState.SOAKING),
    "soak-probe": (TO_SOAK_PROBE, CellState.PROBING),
}
RUNNING = {**BEFORE_CANDIDATE, **AFTER_CANDIDATE}


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


def assert_finished(transition, outcome, *, retryable=False):
    """The cell stopped with ``outcome``: every timer and worker stopped, evidence, then teardown, last."""
    assert transition.state is CellState.CLEANING_UP
    assert transition.context.outcome is outcome, transition.context.reason
    assert transition.context.reason
    assert transition.context.retryable is retryable
    assert transition.commands[-2:] == (CollectEvidence(outcome, transition.context.reason), Teardown())
    for timer in Timer:
        assert CancelTimer(timer) in transition.commands, timer
    assert StopProbe() in transition.commands


# -- the happy path -------------------------------------------------------------------------------


def test_happy_path_transcript_with_one_reboot(make_plan):
    plan = make_plan(reboots=1, ready_s=300, stability_s=15)
    t = plan.timeouts
    transcript = [
        (Begin(), CellState.PROVISIONING, (ArmTimer(Timer.CELL, plan.deadline_s), Provision())),
        (Provisioned(), CellState.BOOTING, (ArmTimer(Timer.READY, 300), ProbeReadiness(0, None))),
        (
            GuestAnswered("m0"),
            CellState.STABILIZING,
            (CancelTimer(Timer.READY), ArmTimer(Timer.STABILITY, 15)),
        ),
        # the baseline: boot 0 probed before anything is installed, without a health check
        (STABLE, CellState.PROBING, (RunProbe(0, health_check=False), ArmTimer(Timer.PROBE, t.probe_s))),
        (
            healthy("m0"),
            CellState.INSTALLING,
            (CancelTimer(Timer.PROBE), RunStep(CANDIDATE), ArmTimer(Timer.INSTALL, t.install_s)),
        ),
        (
            StepFinished(CANDIDATE, ok=True),
            CellState.STABILIZING,
            (CancelTimer(Timer.INSTALL), ArmTimer(Timer.STABILITY, 15)),
        ),
        (STABLE, CellState.PROBING, (RunProbe(0, health_check=True), ArmTimer(Timer.PROBE, t.probe_s))),
        (
            healthy("m0"),
            CellState.BOOTING,
            (CancelTimer(Timer.PROBE), RequestReboot(1), ArmTimer(Timer.READY, 300), ProbeReadiness(1, "m0")),
        ),
        (DomainReset(), CellState.BOOTING, ()),  # the reset we asked for
        (
            GuestAnswered("m1"),
            CellState.STABILIZING,
            (CancelTimer(Timer.READY), ArmTimer(Timer.STABILITY, 15)),
        ),
        (STABLE, CellState.PROBING, (RunProbe(1, health_check=True), ArmTimer(Timer.PROBE, t.probe_s))),
        (healthy("m1"), CellState.SOAKING, (CancelTimer(Timer.PROBE), ArmTimer(Timer.SOAK, t.soak_s))),
        (SOAKED, CellState.PROBING, (RunProbe(1, health_check=True), ArmTimer(Timer.PROBE, t.probe_s))),
    ]
    context = initial_context(plan)
    for event, state, commands in transcript:
        transition = advance(context, event)
        assert transition.state is state, event
        assert transition.commands == commands, event
        context = transition.context
    passed = advance(context, healthy("m1"))
    assert_finished(passed, CellOutcome.PASSED)
    assert passed.context.healthy_boots == (0, 0, 1)  # boot 0 before and after install, boot 1
    assert advance(passed.context, TornDown()).state is CellState.DONE


def test_phases_name_the_boot_and_the_window(make_plan):
    plan = make_plan(reboots=1)
    assert at("booting", plan).phase == "boot 1/2: waiting for readiness"
    assert at("stabilizing-after-install", plan).phase == "boot 1/2: stability window after install"
    assert at("installed-probe", plan).phase == "boot 1/2: health probe"
    assert at("installing", plan).phase == "install candidate"
    assert at("last-stabilizing", plan).phase == "boot 2/2: stability window"
    assert at("soaking", plan).phase == "boot 2/2: soak window"
    assert at("soak-probe", plan).phase == "boot 2/2: health probe after the soak window"


def test_a_reboot_without_a_new_boot_id_is_not_a_reboot(make_plan):
    context = at("rebooted", make_plan())
    assert advance(context, GuestAnswered("m0")).context == context  # still the boot from before


def test_products_are_installed_and_booted_into_before_the_candidate(make_plan):
    plan = make_plan(products=("dlp",), reboots=1)
    assert plan.boots == 3
    events = [Begin(), Provisioned(), GuestAnswered("m0"), STABLE, healthy("m0")]
    context, commands = drive(events, plan)
    assert context.state is CellState.INSTALLING and RunStep(DLP) in commands
    assert not context.candidate_touched  # a product is not the candidate
    context, commands = drive([*events, StepFinished(DLP, ok=True), STABLE, healthy("m0")], plan)
    assert context.state is CellState.BOOTING and RequestReboot(1) in commands  # boot into the product
    context, commands = drive(
        [
            *events,
            StepFinished(DLP, ok=True),
            STABLE,
            healthy("m0"),
            DomainReset(),
            GuestAnswered("m1"),
            STABLE,
            healthy("m1"),
        ],
        plan,
    )
    assert context.state is CellState.INSTALLING and context.current_step == CANDIDATE
    assert context.candidate_touched


# -- the baseline: before the candidate, trouble is the infrastructure's -------------------------


@pytest.mark.parametrize("name", list(BEFORE_CANDIDATE))
@pytest.mark.parametrize(
    "event",
    [DomainCrashed("panicked"), DomainStopped("shutdown", guest_initiated=True)],
    ids=["crash", "powered-off"],
)
def test_a_crash_before_the_candidate_is_infra_and_retried(make_plan, name, event):
    transition = advance(at(name, make_plan()), event)
    assert_finished(transition, CellOutcome.INFRA_ERROR, retryable=True)
    assert transition.context.reason.startswith("before the candidate was installed:")


def test_boot_zero_never_ready_is_infra_not_hung(make_plan):
    transition = advance(at("booting", make_plan(ready_s=60)), READY)
    assert_finished(transition, CellOutcome.INFRA_ERROR, retryable=True)
    assert "boot 1 did not become ready within 60s" in transition.context.reason
    assert InjectNmi() not in transition.commands  # nothing of the candidate to diagnose


def test_a_baseline_probe_that_fails_is_infra(make_plan):
    context = at("baseline-probe", make_plan())
    transition = advance(context, healthy("m0", ssh_ok=False, ssh_detail="connection refused"))
    assert_finished(transition, CellOutcome.INFRA_ERROR, retryable=True)
    assert "network is cut" in transition.context.reason


def test_baseline_warnings_and_taint_become_the_reference(make_plan):
    plan = make_plan()
    warning = ConsoleFinding("WARNING in some_image_driver", fatal=False)
    context, _ = drive(
        [
            *TO_BASELINE_PROBE,
            healthy("m0", tainted=1 << 9, findings=(warning,)),
            StepFinished(CANDIDATE, ok=True),
            STABLE,
        ],
        plan,
    )
    transition = advance(context, healthy("m0", tainted=1 << 9, findings=(warning,)))
    assert transition.state is CellState.BOOTING  # the image's own warning does not fail the candidate


# -- crashes, loops, hangs after the candidate ---------------------------------------------------


@pytest.mark.parametrize("name", list(AFTER_CANDIDATE))
def test_a_crash_at_any_point_after_the_candidate_is_crashed(make_plan, name):
    transition = advance(at(name, make_plan()), DomainCrashed("panicked"))
    assert_finished(transition, CellOutcome.CRASHED)
    assert "panicked" in transition.context.reason


@pytest.mark.parametrize("name", list(RUNNING))
def test_infra_failure_and_host_stopping_the_domain_are_infra(make_plan, name):
    for event in (InfraFailed("qemu-img failed"), DomainStopped("destroyed", guest_initiated=False)):
        assert_finished(advance(at(name, make_plan()), event), CellOutcome.INFRA_ERROR, retryable=True)


@pytest.mark.parametrize("name", list(RUNNING))
def test_cancel_tears_down(make_plan, name):
    transition = advance(at(name, make_plan()), CancelRequested("fail-fast"))
    assert_finished(transition, CellOutcome.CANCELED)
    if RUNNING[name][1] is CellState.INSTALLING:
        assert CancelStep() in transition.commands


def test_cancel_while_pending_leaves_nothing_to_clean(plan):
    transition = advance(initial_context(plan), CancelRequested("fail-fast"))
    assert transition.state is CellState.DONE
    assert transition.context.outcome is CellOutcome.CANCELED
    assert transition.commands == ()


@pytest.mark.parametrize("name", list(RUNNING))
def test_the_cell_deadline_ends_any_state_as_infra(make_plan, name):
    transition = advance(at(name, make_plan()), CELL_LATE)
    assert_finished(transition, CellOutcome.INFRA_ERROR, retryable=True)
    assert "overall deadline" in transition.context.reason


def test_resets_without_readiness_are_a_boot_loop(make_plan):
    context = at("rebooted", make_plan(boot_loop_after=3))
    for at_seconds in (10.0, 20.0):
        context = advance(context, DomainReset(at=at_seconds)).context
        assert context.state is CellState.BOOTING
    assert_finished(advance(context, DomainReset(at=30.0)), CellOutcome.BOOT_LOOP)


def test_a_burst_of_resets_from_one_reboot_counts_once(make_plan):
    context = at("rebooted", make_plan(boot_loop_after=2))
    context = advance(context, DomainReset(at=10.0)).context
    context = advance(context, DomainReset(at=10.4)).context
    assert context.state is CellState.BOOTING and context.unexpected_resets == 1


def test_a_reset_then_readiness_is_a_crash(make_plan):
    context = advance(at("last-stabilizing", make_plan()), DomainReset(at=5.0)).context
    assert context.state is CellState.BOOTING
    assert_finished(advance(context, GuestAnswered("m2")), CellOutcome.CRASHED)


def test_resets_then_the_deadline_is_a_boot_loop(make_plan):
    context = advance(at("last-stabilizing", make_plan()), DomainReset(at=5.0)).context
    assert_finished(advance(context, READY), CellOutcome.BOOT_LOOP)


def test_a_silent_boot_after_the_candidate_is_diagnosed_with_an_nmi(make_plan):
    plan = make_plan(ready_s=120)
    diagnosing = advance(at("rebooted", plan), READY)
    assert diagnosing.state is CellState.DIAGNOSING
    assert diagnosing.commands[-2:] == (InjectNmi(), ArmTimer(Timer.NMI_GRACE, plan.timeouts.nmi_grace_s))
    dumped = advance(diagnosing.context, DomainCrashed("panicked"))
    assert_finished(dumped, CellOutcome.HUNG)
    assert "boot 2 did not become ready within 120s" in dumped.context.reason
    assert "NMI made it panic" in dumped.context.reason
    silent = advance(diagnosing.context, NMI_GRACE)
    assert_finished(silent, CellOutcome.HUNG)
    assert "no crash dump followed the NMI" in silent.context.reason
    undelivered = advance(diagnosing.context, InfraFailed("no such domain"))
    assert_finished(undelivered, CellOutcome.HUNG)


def test_diagnosing_ignores_the_rest_but_cancel(make_plan):
    diagnosing = advance(at("rebooted", make_plan()), READY).context
    for event in (GuestAnswered("m9"), healthy("m9"), STABLE, SOAKED):
        assert advance(diagnosing, event).context == diagnosing
    assert_finished(advance(diagnosing, CancelRequested("user")), CellOutcome.CANCELED)


# -- probes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["installed-probe", "last-probe", "soak-probe"])
@pytest.mark.parametrize(
    ("changes", "outcome", "words"),
    [
        ({"ssh_ok": False}, CellOutcome.DEGRADED, "network is cut"),
        (
            {"sysctls": {**REQUIRED_SYSCTLS, "kernel.panic_on_oops": "0"}},
            CellOutcome.DEGRADED,
            "panic_on_oops is 0",
        ),
        ({"sysctls": {}}, CellOutcome.DEGRADED, "could not be read"),
        ({"tainted": 1 << 9}, CellOutcome.DEGRADED, "W (a kernel warning was printed)"),
        ({"tainted": (1 << 12) | (1 << 13)}, None, ""),  # O and E: every third-party module taints
        (
            {"health_rc": 5, "health_output": "rules_loaded=0"},
            CellOutcome.DEGRADED,
            "exit 5): rules_loaded=0",
        ),
        (
            {"findings": (ConsoleFinding("WARNING in tbf_warn [testbed_faults]", fatal=False),)},
            CellOutcome.DEGRADED,
            "WARNING in tbf_warn [testbed_faults]",
        ),
        (
            {"findings": (ConsoleFinding("BUG: soft lockup in tbf_spin [testbed_faults]", fatal=True),)},
            CellOutcome.CRASHED,
            "BUG: soft lockup in tbf_spin",
        ),
        ({"boot_mark": "m7"}, CellOutcome.CRASHED, "rebooted on its own"),
    ],
)
def test_an_unhealthy_probe_after_the_candidate_fails_it(make_plan, name, changes, outcome, words):
    context = at(name, make_plan())
    transition = advance(context, healthy(context.boot_mark, **changes))
    if outcome is None:
        assert transition.state in (CellState.BOOTING, CellState.SOAKING, CellState.CLEANING_UP)
        assert transition.context.outcome in (None, CellOutcome.PASSED)
        return
    assert_finished(transition, outcome)
    assert words in transition.context.reason


def test_a_silent_agent_at_a_probe_is_a_hang_diagnosed_with_an_nmi(make_plan):
    context = at("soak-probe", make_plan())
    transition = advance(context, ProbeFinished(ProbeReport(agent_ok=False, detail="no reply")))
    assert transition.state is CellState.DIAGNOSING
    assert InjectNmi() in transition.commands
    assert "agent silent" in transition.context.pending_reason


def test_a_probe_that_never_reports_is_infra(make_plan):
    assert_finished(
        advance(at("last-probe", make_plan()), PROBE_LATE), CellOutcome.INFRA_ERROR, retryable=True
    )


def test_a_report_seen_once_is_not_judged_twice(make_plan):
    plan = make_plan()
    warning = ConsoleFinding("WARNING in image_thing", fatal=False)
    context, _ = drive([*TO_BASELINE_PROBE, healthy("m0", findings=(warning,))], plan)
    assert "WARNING in image_thing" in context.known_titles


def test_no_health_check_before_the_candidate_is_installed(make_plan):
    _, commands = drive(TO_BASELINE_PROBE, make_plan())
    assert RunProbe(0, health_check=False) in commands
    assert all(not c.health_check for c in commands if isinstance(c, RunProbe))


# -- install steps ---------------------------------------------------------------------------------


def test_the_candidates_installer_failing_is_install_failed(make_plan):
    context = at("installing", make_plan())
    transition = advance(context, StepFinished(CANDIDATE, ok=False, detail="exit 3"))
    assert_finished(transition, CellOutcome.INSTALL_FAILED)
    assert transition.context.reason == "install candidate failed: exit 3"


def test_the_testbeds_own_step_failing_is_infra(make_plan):
    transition = advance(
        at("installing", make_plan()),
        StepFinished(CANDIDATE, ok=False, blame=Blame.INFRASTRUCTURE, detail="x"),
    )
    assert_finished(transition, CellOutcome.INFRA_ERROR, retryable=True)


def test_a_co_installed_product_failing_is_not_the_candidates_fault(make_plan):
    plan = make_plan(products=("dlp",))
    context, _ = drive([Begin(), Provisioned(), GuestAnswered("m0"), STABLE, healthy("m0")], plan)
    transition = advance(context, StepFinished(DLP, ok=False, detail="exit 1"))
    assert_finished(transition, CellOutcome.INFRA_ERROR)
    assert "not the candidate" in transition.context.reason


def test_an_install_step_out_of_time_asks_the_guest_first(make_plan):
    context = at("installing", make_plan(ready_s=100))
    probing = advance(context, INSTALL_LATE)
    assert probing.state is CellState.PROBING
    assert probing.commands[0] == CancelStep()
    assert RunProbe(0, health_check=False) in probing.commands
    # the guest is fine: the installer itself did not finish
    fine = advance(probing.context, healthy("m0"))
    assert_finished(fine, CellOutcome.INSTALL_FAILED)
    assert "did not finish within" in fine.context.reason
    # the guest went silent: a hang
    silent = advance(probing.context, ProbeFinished(ProbeReport(agent_ok=False)))
    assert silent.state is CellState.DIAGNOSING


def test_losing_ssh_mid_step_with_the_agent_alive_is_the_candidates_cut_network(make_plan):
    context = at("installing", make_plan())
    probing = advance(
        context,
        StepFinished(
            CANDIDATE, ok=False, blame=Blame.INFRASTRUCTURE, detail="ssh: timeout", unreachable=True
        ),
    )
    assert probing.state is CellState.PROBING
    cut = advance(probing.context, healthy("m0", ssh_ok=False, ssh_detail="timed out"))
    assert_finished(cut, CellOutcome.DEGRADED)
    silent = advance(probing.context, ProbeFinished(ProbeReport(agent_ok=False)))
    assert silent.state is CellState.DIAGNOSING
    glitch = advance(probing.context, healthy("m0"))
    assert_finished(glitch, CellOutcome.INFRA_ERROR, retryable=True)
    assert "answers again" in glitch.context.reason


# -- the libvirt connection ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RUNNING))
def test_losing_the_connection_rereads_the_domain_before_deciding(make_plan, name):
    context = at(name, make_plan())
    lost = advance(context, HostLost("libvirtd went away"))
    assert lost.state is CellState.RECONNECTING
    assert lost.commands[-1] == Reconnect()
    assert CancelTimer(Timer.READY) in lost.commands and CancelTimer(Timer.CELL) not in lost.commands
    for event in (READY, STABLE, healthy("m0"), GuestAnswered("m5")):
        assert advance(lost.context, event).context == lost.context  # nothing is decided meanwhile
    running = advance(lost.context, HostReconnected(DomainCondition.RUNNING))
    assert_finished(running, CellOutcome.INFRA_ERROR, retryable=True)
    assert "libvirtd went away" in running.context.reason
    crashed = advance(lost.context, HostReconnected(DomainCondition.CRASHED))
    expected = CellOutcome.CRASHED if context.candidate_touched else CellOutcome.INFRA_ERROR
    assert crashed.context.outcome is expected
    assert_finished(
        advance(lost.context, InfraFailed("did not come back")), CellOutcome.INFRA_ERROR, retryable=True
    )


# -- endings ----------------------------------------------------------------------------------------


def test_cleaning_up_waits_for_teardown_and_ignores_the_rest(make_plan):
    cleaning = advance(at("soaking", make_plan()), DomainCrashed("panicked")).context
    for event in (DomainCrashed("again"), READY, CancelRequested("x"), GuestAnswered("m9"), healthy("m1")):
        assert advance(cleaning, event).context == cleaning
    assert advance(cleaning, TornDown()).state is CellState.DONE


def test_holds_vm_is_true_from_provisioning_until_torn_down(make_plan):
    assert not holds_vm(CellState.PENDING)
    for name in RUNNING:
        assert holds_vm(at(name, make_plan()).state)
    assert holds_vm(CellState.CLEANING_UP)
    assert not holds_vm(CellState.DONE)


# -- property: no pass without every probe and the soak -------------------------------------------

MARKS = ("m0", "m1", "m2", "m3", "m4")
DISTURBANCES = [
    READY,
    STABLE,
    SOAKED,
    PROBE_LATE,
    INSTALL_LATE,
    NMI_GRACE,
    CELL_LATE,
    DomainReset(),
    DomainCrashed("panicked"),
    HostLost("x"),
    HostReconnected(DomainCondition.RUNNING),
    HostReconnected(DomainCondition.CRASHED),
    InfraFailed("x"),
    StepFinished(CANDIDATE, ok=True),
    StepFinished(CANDIDATE, ok=False),
    StepFinished(CANDIDATE, ok=False, unreachable=True),
    TornDown(),
    GuestAnswered("m0"),
    CancelRequested("x"),
]


def _probe_report(choose, mark):
    """Mostly healthy reports of the current boot; sometimes one fact broken."""
    broken = choose([None] * 24 + ["agent", "ssh", "mark", "sysctls", "health", "taint"])
    return ProbeFinished(
        ProbeReport(
            agent_ok=broken != "agent",
            boot_mark=choose(list(MARKS)) if broken == "mark" else mark,
            ssh_ok=broken != "ssh",
            sysctls={} if broken == "sysctls" else dict(REQUIRED_SYSCTLS),
            tainted=(1 << 9) if broken == "taint" else 0,
            health_rc=3 if broken == "health" else 0,
        )
    )


def _plausible(choose, context, new_mark):  # noqa: PLR0911 - one event per state
    """An event the cell's current state expects, so that random walks do reach the end.

    ``choose`` picks one of a list (the first is always the healthy, successful choice).
    """
    match context.state:
        case CellState.PROVISIONING:
            return Provisioned()
        case CellState.BOOTING:
            pick = choose(["answer"] * 8 + ["deadline", "reset"])
            if pick == "answer":
                return GuestAnswered(new_mark())
            return READY if pick == "deadline" else DomainReset()
        case CellState.STABILIZING:
            return STABLE
        case CellState.SOAKING:
            return SOAKED
        case CellState.PROBING:
            return _probe_report(choose, context.boot_mark)
        case CellState.INSTALLING:
            return StepFinished(context.current_step, ok=choose([True] * 9 + [False]))
        case CellState.DIAGNOSING:
            return choose([DomainCrashed("panicked"), NMI_GRACE])
        case CellState.RECONNECTING:
            return HostReconnected(choose(list(DomainCondition)))
    return TornDown()


def _healthy(event, mark, baseline_taint, health_asked):
    """Healthy as a person would judge it: the taint there was before the candidate (the image's and
    the co-installed products' own) is fine, and a health check counts only where one was asked for."""
    report = event.report
    return (
        report.agent_ok
        and report.ssh_ok
        and report.boot_mark == mark
        and bool(report.sysctls)
        and (report.health_rc in (0, None) or not health_asked)
        and report.tainted in (0, baseline_taint)
    )


@settings(max_examples=600, deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=3), st.sampled_from([(), ("dlp",)]))
def test_no_sequence_passes_without_every_boot_probed_and_the_soak(  # noqa: PLR0912 - an observer's bookkeeping
    data, reboots, products
):
    """Random walks, mostly along what each state expects, with disturbances anywhere. Whenever a
    walk passes, an outside observer saw every boot's window end in a healthy probe of that very
    boot, and the soak window end in another one."""
    from tests.unit.conftest import build_plan

    plan = build_plan(reboots=reboots, products=products)
    context = advance(initial_context(plan), Begin()).context
    ready_mark = None
    expecting: str | None = None  # which probe the machine is running: "window" or "soak"
    probed_boots: set[int] = set()
    soaked = False
    baseline_taint = None
    health_asked = candidate_started = False
    marks = iter(f"b{n}" for n in range(1000))

    def choose(options):
        return data.draw(st.sampled_from(options))

    for _ in range(120):
        if data.draw(st.integers(0, 29)) > 0:  # now and then, a disturbance
            event = _plausible(choose, context, lambda: next(marks))
        else:
            event = data.draw(st.sampled_from(DISTURBANCES))
        before = context
        transition = advance(context, event)
        context = transition.context
        note(f"{before.state} boot {before.boot} + {event} -> {context.state}")
        if before.state is CellState.BOOTING and context.state is CellState.STABILIZING:
            ready_mark = event.boot_mark
        if before.state is CellState.STABILIZING and context.state is CellState.PROBING:
            expecting = "window"
        if before.state is CellState.SOAKING and context.state is CellState.PROBING:
            expecting = "soak"
        asked = [c.health_check for c in transition.commands if isinstance(c, RunProbe)]
        health_asked = asked[-1] if asked else health_asked
        if before.state is CellState.PROBING and isinstance(event, ProbeFinished):
            if not candidate_started:
                baseline_taint = event.report.tainted
            if _healthy(event, ready_mark, baseline_taint, health_asked) and expecting == "window":
                probed_boots.add(before.boot)
            if _healthy(event, ready_mark, baseline_taint, health_asked) and expecting == "soak":
                soaked = True
            expecting = None
        candidate_started = candidate_started or RunStep(CANDIDATE) in transition.commands
        if context.state is CellState.CLEANING_UP and before.state is not CellState.CLEANING_UP:
            assert transition.commands[-2:] == (CollectEvidence(context.outcome, context.reason), Teardown())
        if context.outcome is CellOutcome.PASSED:
            assert set(range(plan.boots)) <= probed_boots, (probed_boots, plan.boots)
            assert soaked
            assert context.boot + 1 == plan.boots  # every planned boot happened
        if context.state is CellState.DONE:
            break
    observe(f"ended {context.outcome}")


def test_the_guided_walk_can_pass(make_plan):
    """The property above is not vacuous: its plausible events alone lead to a pass."""
    plan = make_plan(reboots=2, products=("dlp",))
    context = advance(initial_context(plan), Begin()).context
    marks = iter(f"b{n}" for n in range(100))
    for _ in range(60):
        context = advance(
            context, _plausible(lambda options: options[0], context, lambda: next(marks))
        ).context
        if context.outcome is not None:
            break
    assert context.outcome is CellOutcome.PASSED, context.reason
    assert context.healthy_boots == (0, 0, 1, 1, 2, 3)


# -- the matrix dimensions of past incidents -----------------------------------------------------

ACTIVITY = InstallStep.activity()


def test_the_activity_workload_runs_after_install_and_after_every_later_boot(make_plan):
    plan = replace(make_plan(reboots=1), activity=True)
    context, commands = drive([*TO_INSTALLING, StepFinished(CANDIDATE, ok=True)], plan)
    assert context.state is CellState.INSTALLING and context.current_step == ACTIVITY
    assert RunStep(ACTIVITY) in commands
    context, _ = drive(
        [*TO_INSTALLING, StepFinished(CANDIDATE, ok=True), StepFinished(ACTIVITY, ok=True)], plan
    )
    assert context.state is CellState.STABILIZING
    after_reboot = [
        *TO_INSTALLING,
        StepFinished(CANDIDATE, ok=True),
        StepFinished(ACTIVITY, ok=True),
        STABLE,
        healthy("m0"),
        DomainReset(),
        GuestAnswered("m1"),
    ]
    context, commands = drive(after_reboot, plan)
    assert context.state is CellState.INSTALLING and context.current_step == ACTIVITY
    assert commands[-2:] == [RunStep(ACTIVITY), ArmTimer(Timer.INSTALL, plan.timeouts.install_s)]
    assert CancelTimer(Timer.READY) in commands


def test_no_activity_before_the_candidate_is_in(make_plan):
    plan = replace(make_plan(reboots=1), activity=True)
    _, commands = drive(TO_INSTALLING, plan)
    assert RunStep(ACTIVITY) not in commands


def test_the_workload_failing_with_the_candidate_in_is_degraded(make_plan):
    plan = replace(make_plan(), activity=True)
    context, _ = drive([*TO_INSTALLING, StepFinished(CANDIDATE, ok=True)], plan)
    transition = advance(context, StepFinished(ACTIVITY, ok=False, detail="exec of testbed-trigger failed"))
    assert_finished(transition, CellOutcome.DEGRADED)
    assert "activity workload failed" in transition.context.reason


def test_observe_policy_resets_after_a_crash_and_counts_a_boot_loop(make_plan):
    plan = replace(make_plan(boot_loop_after=3), crash_policy=CrashPolicy.OBSERVE)
    context = at("last-stabilizing", plan)
    phases = []
    for crash in (1, 2):
        transition = advance(context, DomainCrashed("panicked"))
        assert transition.state is CellState.BOOTING
        assert ResetGuest() in transition.commands
        context = advance(transition.context, DomainReset()).context  # the reset we asked for
        assert context.unexpected_resets == 0 and context.crashes == crash
        phases.append(context.phase)
    assert phases == [  # boots past the plan's two: no "of 2"
        "boot 3 (after 1 crash): waiting for readiness",
        "boot 4 (after 2 crashes): waiting for readiness",
    ]
    looped = advance(context, DomainCrashed("panicked"))
    assert_finished(looped, CellOutcome.BOOT_LOOP)
    assert "3 crashes in 3 boots" in looped.context.reason


def test_observe_policy_a_guest_that_recovers_still_fails_the_candidate(make_plan):
    """The console keeps the counted crash's report: the probes after the reset know it already.
    A new fatal report later is news (the guest broke again without the hypervisor noticing)."""
    plan = replace(make_plan(reboots=1), crash_policy=CrashPolicy.OBSERVE)
    context = advance(at("last-stabilizing", plan), DomainCrashed("panicked")).context
    boot = context.boot
    counted = (ConsoleFinding("BUG: kernel NULL pointer dereference in tbs_parse", fatal=True),)
    for event in (DomainReset(), GuestAnswered("m9"), STABLE, healthy("m9", findings=counted), SOAKED):
        context = advance(context, event).context
    assert context.boot == boot and context.state is CellState.PROBING
    recovered = advance(context, healthy("m9", findings=counted))
    news = (*counted, ConsoleFinding("BUG: soft lockup - CPU#0 stuck", fatal=True))
    broke_again = advance(context, healthy("m9", findings=news))

    assert_finished(recovered, CellOutcome.CRASHED)
    assert recovered.context.reason.startswith("recovered after 1 crash(es)")
    assert_finished(broke_again, CellOutcome.CRASHED)
    assert broke_again.context.reason.endswith("the console shows BUG: soft lockup - CPU#0 stuck")


def test_observe_policy_a_crash_is_never_hidden_by_what_ends_the_cell_later(make_plan):
    """A sensor that disables itself after crashing: the guest comes back, its health check fails.
    The cell is still the crash, with both in its reason; so is a cell canceled after a crash."""
    plan = replace(make_plan(reboots=1), crash_policy=CrashPolicy.OBSERVE)
    context = advance(at("last-stabilizing", plan), DomainCrashed("panicked")).context
    for event in (DomainReset(), GuestAnswered("m9"), STABLE):
        context = advance(context, event).context

    safe_mode = advance(context, healthy("m9", health_rc=1, health_output="testbed_sensor is in safe mode"))
    canceled = advance(context, CancelRequested("user"))

    assert_finished(safe_mode, CellOutcome.CRASHED)
    assert safe_mode.context.observed is CellOutcome.CRASHED
    assert safe_mode.context.reason.startswith("recovered after 1 crash(es), but degraded: ")
    assert safe_mode.context.reason.endswith("testbed_sensor is in safe mode")
    assert_finished(canceled, CellOutcome.CRASHED)
    assert canceled.context.reason.startswith("crashed 1 time(s) and was reset after each, then canceled: ")


def test_observe_policy_a_crash_in_the_install_step_leaves_the_candidate_installed(make_plan):
    """The installer started the sensor and the kernel went down: after the reset the machine runs
    what the installer put on disk, so its boots are probed with the health check and can pass."""
    plan = replace(make_plan(reboots=1), crash_policy=CrashPolicy.OBSERVE)
    context = advance(at("installing", plan), DomainCrashed("panicked")).context
    commands = []
    for event in (DomainReset(), GuestAnswered("m8"), STABLE):
        transition = advance(context, event)
        context, commands = transition.context, [*commands, *transition.commands]
    assert context.installed and RunProbe(1, health_check=True) in commands
    for event in (healthy("m8"), DomainReset(), GuestAnswered("m9"), STABLE, healthy("m9"), SOAKED):
        context = advance(context, event).context
    recovered = advance(context, healthy("m9"))
    assert_finished(recovered, CellOutcome.CRASHED)
    assert recovered.context.reason.startswith("recovered after 1 crash(es): ")


def test_observe_policy_does_not_apply_before_the_candidate(make_plan):
    plan = replace(make_plan(), crash_policy=CrashPolicy.OBSERVE)
    assert_finished(
        advance(at("booting", plan), DomainCrashed("panicked")), CellOutcome.INFRA_ERROR, retryable=True
    )


def test_a_control_twin_is_judged_like_a_candidate_once_past_its_products(make_plan):
    twin = control_twin(make_plan(products=("dlp",)))
    assert twin.steps == (DLP,)
    assert twin.control_of == "debian12-kernel-n"
    assert twin.cell_id == "debian12-kernel-n~control"
    context, _ = drive(
        [
            Begin(),
            Provisioned(),
            GuestAnswered("m0"),
            STABLE,
            healthy("m0"),
            StepFinished(DLP, ok=True),
            STABLE,
            healthy("m0"),
            DomainReset(),
            GuestAnswered("m1"),
            STABLE,
            healthy("m1"),
        ],
        twin,
    )
    assert context.candidate_touched and context.installed  # where the candidate would have gone in
    assert_finished(advance(context, DomainCrashed("panicked")), CellOutcome.CRASHED)


def test_the_observed_outcome_survives_the_baseline_rule(make_plan):
    transition = advance(at("booting", make_plan()), READY)
    assert transition.context.outcome is CellOutcome.INFRA_ERROR
    assert transition.context.observed is CellOutcome.HUNG  # what a control-hang image is there to show
