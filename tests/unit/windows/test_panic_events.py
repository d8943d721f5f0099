"""GUEST_PANICKED details from QEMU's monitor, through libvirt to the cell's evidence, and what a
Windows domain leaves on the host at teardown.

Registering for the monitor event needs libvirt's QEMU driver; its test driver refuses it, which is
checked here too (the hub must still deliver lifecycle events then). The payloads are recorded ones
(tests/fixtures/windows/panic/, see its README), handed over as libvirt hands them: JSON text.
"""

import json
import queue
from pathlib import Path

import libvirt
import pytest

from orchestrator.adapters.domain_xml import nvram_path
from orchestrator.adapters.libvirt_events import (
    PANIC_MONITOR_EVENT,
    DomainEventHub,
    EventLoop,
    PanicDetails,
    panic_details,
)
from orchestrator.config import HostConfig
from orchestrator.core.cell_events import DomainCrashed, DomainStopped
from orchestrator.guests.domain_cell import PANIC_FILE, DomainCell
from orchestrator.guests.windows.family import WindowsFamily
from orchestrator.guests.windows.panic import bugcheck_from_panic_info
from tests.unit.windows.cells import AgentHost, run_context, windows_plan, windows_record, write_candidate

pytestmark = pytest.mark.unit

PANIC_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "windows" / "panic"
WAIT_S = 5.0


@pytest.mark.parametrize(
    ("fixture", "stop_code"),
    [
        ("guest-panicked-hotplug-0x3e.json", 0x3E),
        ("guest-panicked-kubevirt-0xc0000420.json", 0xC0000420),
        ("guest-panicked-kubevirt-test.json", 0x5A),
        ("guest-panicked-no-info.json", None),
    ],
)
def test_monitor_event_details_become_panic_details(fixture, stop_code):
    text = (PANIC_FIXTURES / fixture).read_text()
    details = panic_details(1795600000, 250000, text)
    assert details.data == json.loads(text)
    assert details.at == pytest.approx(1795600000.25)
    found = bugcheck_from_panic_info(details.data)
    assert (found.code if found else None) == stop_code
    assert details.as_dict() == {"event": PANIC_MONITOR_EVENT, "at": details.at, "data": json.loads(text)}


@pytest.mark.parametrize(
    ("text", "data"), [(None, {}), ("", {}), ("not json", {"unparsed": "not json"}), ("7", {"value": 7})]
)
def test_odd_monitor_details_are_kept_not_raised(text, data):
    assert panic_details(1, 0, text).data == data


@pytest.fixture
def hub_on_test_driver():
    EventLoop.ensure_running()
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


def test_a_driver_without_monitor_events_still_delivers_lifecycle_events(hub_on_test_driver):
    _, hub, domain = hub_on_test_driver
    assert "not supported" in hub.panic_details_problem  # libvirt's test driver has no QEMU monitor
    received: queue.Queue = queue.Queue()
    hub.subscribe("test", received.put)
    domain.destroy()
    assert received.get(timeout=WAIT_S) == DomainStopped("destroyed", guest_initiated=False)


def test_the_hub_hands_panic_details_to_the_domains_listener(hub_on_test_driver):
    _, hub, domain = hub_on_test_driver
    received: queue.Queue = queue.Queue()
    hub.subscribe("test", received.put)
    text = (PANIC_FIXTURES / "guest-panicked-hotplug-0x3e.json").read_text()
    # as libvirt's dispatcher calls it: (conn, domain, event, seconds, micros, details, opaque)
    hub._on_monitor_event(None, domain, PANIC_MONITOR_EVENT, 1795600000, 0, text, None)
    hub._on_monitor_event(None, domain, "SHUTDOWN", 1795600001, 0, "{}", None)  # not ours
    assert received.get(timeout=WAIT_S) == PanicDetails(json.loads(text), 1795600000.0)
    assert received.empty()


# -- the domain cell ------------------------------------------------------------------------------


class DomainHost(AgentHost):
    """The libvirt host operations a domain cell uses, recorded."""

    def __init__(self, tmp_path: Path, uri: str = "qemu:///system") -> None:
        super().__init__()
        self.config = HostConfig(name="local", uri=uri, log_dir=tmp_path / "logs")
        self.started: list[str] = []
        self.removed: list[str] = []

    def subscribe(self, name, listener):
        self.listener = listener

    def unsubscribe(self, name):
        self.listener = None

    def create_overlay(self, pool, name, backing):
        pool.mkdir(parents=True, exist_ok=True)
        (pool / name).write_bytes(b"overlay")
        return pool / name

    def delete_overlay(self, pool, name):
        (pool / name).unlink(missing_ok=True)

    def domain_type(self):
        return "kvm"

    def start_transient(self, xml):
        self.started.append(xml)

    def remove_domain(self, name):
        self.removed.append(name)


def windows_cell(tmp_path: Path, host: DomainHost):
    record = windows_record(tmp_path / "images")
    context = run_context(tmp_path, record, write_candidate(tmp_path / "candidate"))
    posted: list = []
    family = WindowsFamily(host, context, step_runner=lambda *args: None)
    cell = DomainCell(windows_plan(record), posted.append, host, context, family)
    return cell, posted


def test_every_guest_panicked_goes_into_the_cells_evidence_and_the_crash_report(tmp_path):
    host = DomainHost(tmp_path)
    cell, posted = windows_cell(tmp_path, host)
    cell.provision()
    first = (PANIC_FIXTURES / "guest-panicked-hotplug-0x3e.json").read_text()
    host.listener(panic_details(1795600000, 0, first))
    host.listener(panic_details(1795600001, 0, None))
    host.listener(DomainCrashed("panicked"))
    assert posted == [
        DomainCrashed("panicked")
    ]  # the lifecycle event tells the machine; details are evidence
    recorded = json.loads((cell.cell_dir / PANIC_FILE).read_text())
    assert [entry["data"] for entry in recorded] == [json.loads(first), {}]
    assert cell._family.crash_report(cell.console_log, "")["title"] == (
        "0x3E MULTIPROCESSOR_CONFIGURATION_NOT_SUPPORTED"
    )


def test_teardown_removes_the_nvram_copy_libvirt_keeps(tmp_path):
    host = DomainHost(tmp_path)
    cell, _ = windows_cell(tmp_path, host)
    cell.provision()
    (overlay,) = [path for path in cell._pool_dir.iterdir() if path.suffix == ".qcow2"]
    nvram = nvram_path(overlay)
    nvram.write_bytes(b"variables")  # what libvirt copies from the template when the domain starts
    assert str(nvram) in host.started[0]
    cell.teardown()
    assert host.removed == [cell.domain]
    assert not overlay.exists() and not nvram.exists()


def test_on_a_remote_host_the_nvram_copy_is_named_in_the_evidence(tmp_path):
    host = DomainHost(tmp_path, uri="qemu+ssh://testbed@rack2/system")
    cell, _ = windows_cell(tmp_path, host)
    cell.provision()
    cell.teardown()
    note = (cell.cell_dir / "host-leftovers.txt").read_text()
    assert note.startswith("left on host local:") and "_VARS.fd" in note
