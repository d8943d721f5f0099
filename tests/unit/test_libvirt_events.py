"""libvirt lifecycle events as cell events: the translation table, and the hub against ``test:///default``.

libvirt's test driver delivers real lifecycle events with no hypervisor. Its state is shared by
every connection of the process, so the fixture puts the domain "test" back running afterwards.
"""

import queue
from dataclasses import replace

import libvirt
import pytest

from orchestrator.adapters.libvirt_events import DomainEventHub, EventLoop, translate_lifecycle
from orchestrator.core.cell_events import Begin, DomainCrashed, DomainStopped, Provisioned
from orchestrator.core.cell_machine import advance, initial_context
from orchestrator.core.outcomes import CellOutcome, CellState

pytestmark = pytest.mark.unit

WAIT_S = 5.0  # bound for the event loop thread to deliver; only reached if something is broken


@pytest.mark.parametrize(
    ("event", "detail", "expected"),
    [
        (
            libvirt.VIR_DOMAIN_EVENT_CRASHED,
            libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED,
            DomainCrashed("panicked"),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_CRASHED,
            libvirt.VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED,
            DomainCrashed("crashloaded"),
        ),
        (libvirt.VIR_DOMAIN_EVENT_CRASHED, 99, DomainCrashed("detail 99")),
        (
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN,
            DomainStopped("shutdown", True),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
            DomainStopped("destroyed", False),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED,
            DomainStopped("failed", False),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
            DomainStopped("migrated", False),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED,
            DomainStopped("saved", False),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_STOPPED,
            libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT,
            DomainStopped("from snapshot", False),
        ),
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, 99, DomainStopped("detail 99", False)),
        (
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
            DomainStopped("paused on a host I/O error", False),
        ),
        (
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR,
            DomainStopped("paused on a libvirt API error", False),
        ),
        (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED, None),
        (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG, None),
        (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED, None),
        (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED, None),
        (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED_ADDED, None),
        (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED, None),
        (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, libvirt.VIR_DOMAIN_EVENT_SHUTDOWN_GUEST, None),
        (libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED, libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED_MEMORY, None),
    ],
    ids=[
        "crashed-panicked",
        "crashed-crashloaded",
        "crashed-unknown",
        "stopped-shutdown",
        "stopped-destroyed",
        "stopped-failed",
        "stopped-migrated",
        "stopped-saved",
        "stopped-from-snapshot",
        "stopped-unknown",
        "suspended-io-error",
        "suspended-api-error",
        "suspended-paused",
        "suspended-watchdog",
        "started",
        "resumed",
        "defined",
        "undefined",
        "shutdown-begins",
        "pm-suspended",
    ],
)
def test_translate_lifecycle(event, detail, expected):
    assert translate_lifecycle(event, detail) == expected


def test_a_guest_crash_that_stopped_the_domain_is_a_crash(plan):
    translated = translate_lifecycle(
        libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED
    )
    booting = advance(advance(initial_context(plan), Begin()).context, Provisioned()).context
    # before the candidate is installed, even a crash is the image's (the baseline)
    before = advance(booting, translated).context
    assert before.outcome is CellOutcome.INFRA_ERROR and "crash" in before.reason
    installing = replace(booting, state=CellState.INSTALLING, candidate_touched=True)
    assert advance(installing, translated).context.outcome is CellOutcome.CRASHED


# -- DomainEventHub on libvirt's test driver ------------------------------------------------------


@pytest.fixture
def test_driver():
    EventLoop.ensure_running()
    EventLoop.ensure_running()  # once per process, however often it is asked
    connection = libvirt.open("test:///default")
    hub = DomainEventHub()
    hub.attach(connection)
    domain = connection.lookupByName("test")
    if not domain.isActive():
        domain.create()
    try:
        yield connection, hub, domain
    finally:
        hub.detach(connection)
        if not domain.isActive():
            domain.create()
        connection.close()


def listen(hub, name="test") -> queue.Queue:
    received: queue.Queue = queue.Queue()
    hub.subscribe(name, received.put)
    return received


@pytest.fixture
def witness(test_driver):
    """A lifecycle callback registered after the hub's, on a second connection to the same shared
    driver (libvirt-python refuses a second all-domains lifecycle callback on one connection:
    "event callback already tracked"). libvirt dispatches an event to callbacks in the order they
    were registered, so once the witness has seen it, the hub has handled it too."""
    connection = libvirt.open("test:///default")
    seen: queue.Queue = queue.Queue()
    callback_id = connection.domainEventRegisterAny(
        None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda _c, d, e, _dt, _o: seen.put((d.name(), e)), None
    )
    yield seen
    connection.domainEventDeregisterAny(callback_id)
    connection.close()


def test_hub_delivers_a_destroy_to_the_domains_listener(test_driver):
    _connection, hub, domain = test_driver
    received = listen(hub)
    domain.destroy()
    assert received.get(timeout=WAIT_S) == DomainStopped("destroyed", guest_initiated=False)


def test_hub_delivers_a_guest_shutdown_as_guest_initiated(test_driver):
    _connection, hub, domain = test_driver
    received = listen(hub)
    domain.shutdown()
    assert received.get(timeout=WAIT_S) == DomainStopped("shutdown", guest_initiated=True)


def test_hub_drops_what_cells_ignore_and_the_test_driver_sends_no_reboot_event(test_driver):
    _connection, hub, domain = test_driver
    received = listen(hub)
    domain.destroy()
    assert received.get(timeout=WAIT_S) == DomainStopped("destroyed", guest_initiated=False)
    domain.create()  # STARTED/BOOTED: nothing for a cell
    domain.reboot(0)  # the test driver restarts in place and emits neither REBOOT nor lifecycle
    domain.destroy()
    # Events arrive in order: had the start or the reboot produced a signal, it would come first.
    assert received.get(timeout=WAIT_S) == DomainStopped("destroyed", guest_initiated=False)
    assert received.empty()


def test_hub_delivers_only_to_the_named_domain_and_not_after_unsubscribe(test_driver, witness):
    _connection, hub, domain = test_driver
    others = listen(hub, "some-other-domain")
    mine = listen(hub)
    hub.unsubscribe("test")
    domain.destroy()
    assert witness.get(timeout=WAIT_S) == ("test", libvirt.VIR_DOMAIN_EVENT_STOPPED)
    assert mine.empty()
    assert others.empty()


def test_hub_detach_stops_delivery_and_is_safe_twice(test_driver, witness):
    connection, hub, domain = test_driver
    received = listen(hub)
    hub.detach(connection)
    hub.detach(connection)
    domain.destroy()
    assert witness.get(timeout=WAIT_S) == ("test", libvirt.VIR_DOMAIN_EVENT_STOPPED)
    assert received.empty()
