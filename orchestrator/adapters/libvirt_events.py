"""libvirt's event loop in one daemon thread, and the translation of domain events into cell events.

libvirt delivers lifecycle, reboot and agent events only to a process that registered an event
loop implementation *before* opening connections; this module does that once per process.
"""

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import libvirt
import libvirt_qemu

from orchestrator.core.cell_events import CellEvent, DomainCrashed, DomainReset, DomainStopped, HostLost


class EventLoop:
    """The process-wide libvirt default event loop, started on first use."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None

    @classmethod
    def ensure_running(cls) -> None:
        with cls._lock:
            if cls._thread is not None:
                return
            libvirt.virEventRegisterDefaultImpl()
            cls._thread = threading.Thread(target=cls._run, name="libvirt-events", daemon=True)
            cls._thread.start()

    @staticmethod
    def _run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()


@dataclass(frozen=True)
class AgentSignal:
    """The guest agent connected or disconnected (wakes a waiting readiness probe)."""

    connected: bool


PANIC_MONITOR_EVENT = "GUEST_PANICKED"


@dataclass(frozen=True)
class PanicDetails:
    """QEMU's ``GUEST_PANICKED`` event, which libvirt's lifecycle event (CRASHED/PANICKED) leaves out.

    ``data`` is the event's data object: ``{"action": "pause", "info": {"type": "hyper-v", "arg1":
    80, ...}}`` for Windows (the Hyper-V crash MSRs: stop code and its four parameters); a Linux
    guest's pvpanic brings no ``info``.
    """

    data: Mapping[str, object] = field(default_factory=dict)
    at: float = 0.0  # seconds since the epoch, as QEMU stamped the event

    def as_dict(self) -> dict[str, object]:
        return {"event": PANIC_MONITOR_EVENT, "at": self.at, "data": dict(self.data)}


def panic_details(seconds: int, micros: int, details: str | None) -> PanicDetails:
    """The monitor event's JSON text (libvirt hands it over as a string, or None) as data."""
    try:
        data = json.loads(details) if details else {}
    except ValueError:
        data = {"unparsed": details}
    return PanicDetails(data if isinstance(data, dict) else {"value": data}, seconds + micros / 1e6)


DomainSignal = CellEvent | AgentSignal | PanicDetails
"""What a domain's listener hears: cell events, agent (dis)connections, panic details, ``HostLost``."""
DomainListener = Callable[[DomainSignal], None]

_CRASH_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED: "panicked",
    libvirt.VIR_DOMAIN_EVENT_CRASHED_CRASHLOADED: "crashloaded",
}
_STOP_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: ("shutdown", True),
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: ("destroyed", False),
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: ("failed", False),
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: ("migrated", False),
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: ("saved", False),
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: ("from snapshot", False),
}

_HOST_PAUSES = {
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR: "paused on a host I/O error",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR: "paused on a libvirt API error",
}


def translate_lifecycle(event: int, detail: int) -> CellEvent | None:
    """A libvirt lifecycle (event, detail) pair as a cell event; None for the ones cells ignore."""
    if event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
        return DomainCrashed(_CRASH_DETAILS.get(detail, f"detail {detail}"))
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED:
        return DomainCrashed("crashed, then stopped by on_crash")  # libvirt: "the guest crashed"
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        reason, guest_initiated = _STOP_DETAILS.get(detail, (f"detail {detail}", False))
        return DomainStopped(reason, guest_initiated)
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and detail in _HOST_PAUSES:
        # QEMU paused the guest because the host failed it: left alone it would look like a hang.
        return DomainStopped(_HOST_PAUSES[detail], guest_initiated=False)
    return None


class DomainEventHub:
    """Registers once per connection for every domain and hands events to the listener of each name."""

    def __init__(self) -> None:
        self._listeners: dict[str, DomainListener] = {}
        self._lock = threading.Lock()
        self._callback_ids: list[int] = []
        self._monitor_callback_id: int | None = None
        self.panic_details_problem = ""  # why GUEST_PANICKED details cannot be had ('' when they can)

    def attach(self, connection: libvirt.virConnect) -> None:
        self._callback_ids = [
            connection.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
            ),
            connection.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._on_reboot, None
            ),
            connection.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent, None
            ),
        ]
        self._attach_panic_details(connection)

    def _attach_panic_details(self, connection: libvirt.virConnect) -> None:
        """QEMU's panic details for every domain of the connection. Only the QEMU driver has them
        (libvirt's test driver, for one, refuses): without them a crash is still reported by the
        lifecycle event, only without the hypervisor's copy of the stop code."""
        self._monitor_callback_id, self.panic_details_problem = None, ""
        try:
            self._monitor_callback_id = libvirt_qemu.qemuMonitorEventRegister(
                connection, None, PANIC_MONITOR_EVENT, self._on_monitor_event, None, 0
            )
        except libvirt.libvirtError as exc:
            self.panic_details_problem = str(exc)

    def detach(self, connection: libvirt.virConnect) -> None:
        for callback_id in self._callback_ids:
            # A connection that is already gone took its callbacks with it.
            with contextlib.suppress(libvirt.libvirtError):
                connection.domainEventDeregisterAny(callback_id)
        self._callback_ids = []
        if self._monitor_callback_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                libvirt_qemu.qemuMonitorEventDeregister(connection, self._monitor_callback_id)
            self._monitor_callback_id = None

    def subscribe(self, domain_name: str, listener: DomainListener) -> None:
        with self._lock:
            self._listeners[domain_name] = listener

    def unsubscribe(self, domain_name: str) -> None:
        with self._lock:
            self._listeners.pop(domain_name, None)

    def broadcast_lost(self, detail: str) -> None:
        """The connection broke: every domain's listener hears it (they decide what it means)."""
        with self._lock:
            listeners = list(self._listeners.values())
        for listener in listeners:
            listener(HostLost(detail))

    def _deliver(self, domain: libvirt.virDomain, signal: DomainSignal) -> None:
        with self._lock:
            listener = self._listeners.get(domain.name())
        if listener is not None:
            listener(signal)

    def _on_lifecycle(
        self, _conn: object, domain: libvirt.virDomain, event: int, detail: int, _opaque: object
    ) -> None:
        translated = translate_lifecycle(event, detail)
        if translated is not None:
            self._deliver(domain, translated)

    def _on_reboot(self, _conn: object, domain: libvirt.virDomain, _opaque: object) -> None:
        self._deliver(domain, DomainReset(at=time.monotonic()))

    def _on_agent(
        self, _conn: object, domain: libvirt.virDomain, state: int, _reason: int, _opaque: object
    ) -> None:
        connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        self._deliver(domain, AgentSignal(connected))

    def _on_monitor_event(
        self,
        _conn: object,
        domain: libvirt.virDomain,
        event: str,
        seconds: int,
        micros: int,
        details: str | None,
        _opaque: object,
    ) -> None:
        if event == PANIC_MONITOR_EVENT:
            self._deliver(domain, panic_details(seconds, micros, details))
