"""One libvirt host: its connection, the isolated guest network, the overlay pool, domains.

Every ``libvirt.libvirtError`` is translated here into ``InfrastructureError``: callers never
see libvirt's exceptions. Overlays are created through libvirt's storage API, so the same code
works for a remote ``qemu+ssh://`` host as for this machine.
"""

import base64
import contextlib
import fcntl
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from orchestrator.adapters.domain_xml import DOMAIN_PREFIX, METADATA_NAMESPACE
from orchestrator.adapters.kvm_probe import probe_kvm
from orchestrator.adapters.libvirt_events import DomainEventHub, DomainListener, EventLoop
from orchestrator.adapters.libvirt_network import (
    GUEST_FILTER,
    guest_filter_xml,
    network_is_contained,
    network_xml,
)
from orchestrator.config import HostConfig
from orchestrator.core.cell_events import DomainCondition
from orchestrator.errors import InfrastructureError

__all__ = ["GUEST_FILTER", "LibvirtHost", "network_xml", "overlay_xml", "pool_name", "pool_xml"]

RECONNECT_SECONDS = 60.0
"""How long a host gets to come back after its connection broke (libvirtd restarting takes seconds)."""

POOL_PREFIX = "endpoint-testbed-"


def pool_name(path: Path) -> str:
    """One libvirt pool per overlay directory, so two state directories never share a pool."""
    return POOL_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:10]


def _quiet_libvirt_errors(_context: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised as exceptions instead."""


libvirt.registerErrorHandler(_quiet_libvirt_errors, None)


def pool_xml(path: Path) -> str:
    return f"""<pool type='dir'>
  <name>{pool_name(path)}</name>
  <target><path>{path}</path></target>
</pool>
"""


def overlay_xml(name: str, backing: Path) -> str:
    """No capacity: libvirt takes the backing image's, wherever the host is."""
    return f"""<volume>
  <name>{name}</name>
  <target><format type='qcow2'/></target>
  <backingStore><path>{backing}</path><format type='qcow2'/></backingStore>
</volume>
"""


@dataclass(frozen=True)
class OwnedDomain:
    """A domain the testbed started, as found on a host (for the reaper)."""

    name: str
    run_id: str | None  # from the domain's metadata; None for a bare name-prefix match
    active: bool


@dataclass(frozen=True)
class ExecResult:
    """What a command run through the guest agent returned."""

    exit_code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _host_wide_lock(path: Path) -> Iterator[None]:
    """An flock shared by every testbed process on this machine (released if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LibvirtHost:
    """A connection to one libvirt host and the operations cells need from it.

    The connection is watched (libvirt's close callback): when it breaks, every subscribed cell
    hears ``HostLost`` through its listener, and ``reconnect`` makes a new one (re-registering the
    event callbacks) that the cells then use.
    """

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.name = config.name
        self.events = DomainEventHub()
        self._connection: libvirt.virConnect | None = None
        self._pools: dict[Path, libvirt.virStoragePool] = {}
        self._lock = threading.Lock()
        self._reconnect_lock = threading.Lock()
        self._generation = 0  # bumped at every (re)connection
        self._closing = False

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        EventLoop.ensure_running()
        try:
            connection = libvirt.open(self.config.uri)
            if not self.config.is_local:
                connection.setKeepAlive(5, 3)
            generation = self._generation + 1
            connection.registerCloseCallback(self._on_close, generation)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(
                f"host {self.name}: cannot connect to {self.config.uri}: {exc}"
            ) from exc
        self.events.attach(connection)
        with self._lock:
            self._connection = connection
            self._generation = generation
            self._pools = {}
        self._closing = False

    def _on_close(self, _connection: object, reason: int, generation: object) -> None:
        """libvirt's close callback (event loop thread): tell every cell, never call libvirt here."""
        if self._closing or generation != self._generation:
            return
        why = {
            libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "I/O error",
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "the daemon closed it",
            libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timed out",
        }.get(reason, f"reason {reason}")
        with self._lock:
            self._connection = None
            self._pools = {}
        self.events.broadcast_lost(f"host {self.name}: the libvirt connection broke ({why})")

    def reconnect(self, wait_s: float = RECONNECT_SECONDS) -> None:
        """Connect again, waiting for the daemon to come back; one attempt at a time per host."""
        with self._reconnect_lock:
            if self._connection is not None and self._alive(self._connection):
                return  # another cell already reconnected
            deadline = time.monotonic() + wait_s
            problem = ""
            while time.monotonic() < deadline:
                try:
                    self.connect()
                except InfrastructureError as exc:
                    problem = str(exc)
                    time.sleep(1.0)  # the daemon is restarting: there is no event to wait for
                else:
                    return
            raise InfrastructureError(f"host {self.name}: did not come back within {wait_s:g}s: {problem}")

    @staticmethod
    def _alive(connection: libvirt.virConnect) -> bool:
        try:
            return bool(connection.isAlive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        self._closing = True
        with self._lock:
            connection, self._connection = self._connection, None
            self._pools = {}
        if connection is not None:
            self.events.detach(connection)
            # Closing a broken connection has nothing left to clean up.
            with contextlib.suppress(libvirt.libvirtError):
                connection.unregisterCloseCallback()
            with contextlib.suppress(libvirt.libvirtError):
                connection.close()

    @property
    def connection(self) -> libvirt.virConnect:
        connection = self._connection
        if connection is None:
            raise InfrastructureError(f"host {self.name}: not connected")
        return connection

    # -- facts ------------------------------------------------------------------------------

    def domain_type(self) -> str:
        """'kvm' where hardware virtualization works, else 'qemu' (TCG)."""
        if self.config.accel != "auto":
            return "kvm" if self.config.accel == "kvm" else "qemu"
        if self.config.is_local:
            return probe_kvm().domain_type
        try:
            self.connection.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
        except libvirt.libvirtError:
            return "qemu"
        return "kvm"

    def cpus(self) -> int:
        try:
            return int(self.connection.getInfo()[2])
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot read host info: {exc}") from exc

    def max_cells(self) -> int:
        return self.config.max_cells or self.cpus()

    def total_memory_mib(self) -> int:
        try:
            return int(self.connection.getInfo()[1])
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot read host info: {exc}") from exc

    def free_memory_mib(self) -> int:
        """Memory guests can still get: free plus what the page cache would give back."""
        try:
            stats = self.connection.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
            available_kib = sum(stats.get(key, 0) for key in ("free", "buffers", "cached"))
            return int(available_kib // 1024)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot read free memory: {exc}") from exc

    # -- network and pool -------------------------------------------------------------------

    def ensure_network(self, name: str, bridge: str, cidr: str) -> None:
        """The contained guest network and its guest filter, defined and running (safe to race).

        A network left by an older testbed with its resolver on is defined anew, but only while no
        domain uses it: restarting a network cuts the guests on it off.
        """
        with self._lock:
            try:
                self.connection.nwfilterDefineXML(guest_filter_xml(cidr))
                try:
                    network = self.connection.networkLookupByName(name)
                except libvirt.libvirtError:
                    network = self.connection.networkDefineXML(network_xml(name, bridge, cidr))
                if not network_is_contained(network.XMLDesc(0)) and not self._testbed_domains_running():
                    if network.isActive():
                        network.destroy()
                    network = self.connection.networkDefineXML(network_xml(name, bridge, cidr))
                if not network.isActive():
                    network.create()
            except libvirt.libvirtError as exc:
                if "already active" in str(exc) or "already exists" in str(exc):
                    return
                raise InfrastructureError(f"host {self.name}: guest network {name}: {exc}") from exc

    def _testbed_domains_running(self) -> bool:
        try:
            return any(d.name().startswith(DOMAIN_PREFIX) for d in self.connection.listAllDomains(0))
        except libvirt.libvirtError:
            return True

    def ensure_pool(self, path: Path) -> libvirt.virStoragePool:
        """Define and start the overlay pool; refresh it only when this process started it.

        Refreshing a running pool while another process creates a volume in it fails ("asynchronous
        jobs running"), so it happens only under a host-wide lock, right after the pool started.
        """
        with self._lock:
            if path in self._pools:
                return self._pools[path]
        with _host_wide_lock(path / ".pool.lock"):
            try:
                try:
                    pool = self.connection.storagePoolLookupByName(pool_name(path))
                except libvirt.libvirtError:
                    pool = self.connection.storagePoolDefineXML(pool_xml(path), 0)
                    pool.build(0)
                if not pool.isActive():
                    pool.create(0)  # starting a dir pool scans it: no refresh needed
            except libvirt.libvirtError as exc:
                raise InfrastructureError(f"host {self.name}: storage pool at {path}: {exc}") from exc
        with self._lock:
            self._pools[path] = pool
        return pool

    def refresh_pool(self, path: Path) -> None:
        """See overlay files libvirt does not know of (left by a killed run): for the reaper only."""
        pool = self.ensure_pool(path)
        with _host_wide_lock(path / ".pool.lock"):
            try:
                pool.refresh(0)
            except libvirt.libvirtError as exc:
                raise InfrastructureError(f"host {self.name}: cannot refresh pool {path}: {exc}") from exc

    def overlay_names(self, path: Path) -> list[str]:
        pool = self.ensure_pool(path)
        try:
            return [str(name) for name in pool.listVolumes()]
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot list the pool at {path}: {exc}") from exc

    def create_overlay(self, pool_path: Path, name: str, backing: Path) -> Path:
        """A qcow2 linked clone of ``backing``: milliseconds, and the golden image stays untouched."""
        pool = self.ensure_pool(pool_path)
        try:
            volume = pool.createXML(overlay_xml(name, backing), 0)
            return Path(volume.path())
        except libvirt.libvirtError as exc:
            raise InfrastructureError(
                f"host {self.name}: cannot create overlay {name} on {backing}: {exc}"
            ) from exc

    def delete_overlay(self, pool_path: Path, name: str) -> None:
        pool = self.ensure_pool(pool_path)
        try:
            volume = pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return  # already gone
        try:
            volume.delete(0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot delete overlay {name}: {exc}") from exc

    # -- domains ----------------------------------------------------------------------------

    def start_transient(self, xml: str) -> None:
        """Start a domain that dies with this connection (libvirt autodestroy).

        If the testbed is killed, libvirt destroys its guests; nothing is ever defined, so nothing
        is left to undefine. (A restarted libvirtd forgets autodestroy: the reaper covers that.)
        """
        try:
            domain = self.connection.createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: the domain did not start: {exc}") from exc
        self._let_panics_print(domain)

    @staticmethod
    def _let_panics_print(domain: libvirt.virDomain) -> None:
        """Keep a panicking guest running (QMP ``set-action panic=none``) instead of pausing it.

        A panic raised in NMI context (an injected NMI, a hard-lockup detector) reaches the console
        only when the kernel flushes it at the end of ``panic()`` — after the panic notifiers, and
        pvpanic's notifier is what tells QEMU, which pauses the guest on the spot. Left running,
        the guest prints its report and then spins in its panic loop (``panic=0``): still
        preserved for evidence, and libvirt still reports it CRASHED (PANICKED).
        """
        request = json.dumps({"execute": "set-action", "arguments": {"panic": "none"}})
        with contextlib.suppress(libvirt.libvirtError):  # an older QEMU: crashes are still reported
            libvirt_qemu.qemuMonitorCommand(domain, request, 0)

    def _domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.connection.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise InfrastructureError(f"host {self.name}: lookup of {name}: {exc}") from exc

    def remove_domain(self, name: str) -> None:
        """Destroy (if running) and undefine (if defined); quietly done if it is already gone."""
        domain = self._domain(name)
        if domain is None:
            return
        try:
            if domain.isActive():
                domain.destroy()
            if domain.isPersistent():
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise InfrastructureError(f"host {self.name}: cannot remove domain {name}: {exc}") from exc

    def domain_state(self, name: str) -> tuple[int, int] | None:
        domain = self._domain(name)
        if domain is None:
            return None
        try:
            state, reason = domain.state()
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: state of {name}: {exc}") from exc
        return int(state), int(reason)

    def domain_condition(self, name: str) -> DomainCondition:
        """What became of a domain while nobody listened (after a reconnection)."""
        state = self.domain_state(name)
        if state is None:
            return DomainCondition.MISSING
        if state[0] == libvirt.VIR_DOMAIN_CRASHED or (
            state[0] == libvirt.VIR_DOMAIN_SHUTOFF and state[1] == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
        ):
            return DomainCondition.CRASHED
        if state[0] in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTDOWN):
            return DomainCondition.STOPPED
        return DomainCondition.RUNNING

    def testbed_domains(self) -> list[str]:
        """Names of every domain the testbed owns on this host (by metadata, else by name prefix)."""
        return [domain.name for domain in self.owned_domains()]

    def owned_domains(self) -> list[OwnedDomain]:
        try:
            domains = self.connection.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot list domains: {exc}") from exc
        owned = []
        for domain in domains:
            try:
                name, active = domain.name(), bool(domain.isActive())
            except libvirt.libvirtError:
                continue  # it went away while we looked
            try:
                metadata = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NAMESPACE, 0)
            except libvirt.libvirtError:
                if name.startswith(DOMAIN_PREFIX):
                    owned.append(OwnedDomain(name, None, active))
                continue
            owned.append(OwnedDomain(name, _run_of(metadata), active))
        return owned

    def reboot_guest(self, name: str) -> None:
        """A clean reboot by the guest itself, asked through the guest agent."""
        domain = self._require(name)
        try:
            domain.reboot(libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(
                f"host {self.name}: reboot of {name} through the agent failed: {exc}"
            ) from exc

    def inject_nmi(self, name: str) -> None:
        """An NMI into a silent guest (``unknown_nmi_panic``): it panics and prints where it hung."""
        domain = self._require(name)
        try:
            domain.injectNMI(0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot inject an NMI into {name}: {exc}") from exc

    def reset_crashed(self, name: str) -> None:
        """Make a crashed guest boot again: pause it, reset it, resume it.

        A crashed guest keeps running in QEMU (``_let_panics_print``) while libvirt calls it
        CRASHED. libvirt turns a reset of a crashed domain into PAUSED, and only QEMU's RESUME
        event makes it RUNNING again; resuming a QEMU that never stopped sends none, so the
        rebooted guest ran while libvirt refused every agent command ("domain is not running")
        and the cell timed out as hung. Pausing first gives the resume a real stop to undo.
        """
        domain = self._require(name)
        try:
            if domain.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                domain.suspend()
            domain.reset(0)
            domain.resume()
            state = domain.state()
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot reset the crashed {name}: {exc}") from exc
        if state[0] != libvirt.VIR_DOMAIN_RUNNING:
            raise InfrastructureError(
                f"host {self.name}: the crashed {name} was reset and resumed, but libvirt reports "
                f"state {state[0]} (reason {state[1]}), not running"
            )

    def _require(self, name: str) -> libvirt.virDomain:
        domain = self._domain(name)
        if domain is None:
            raise InfrastructureError(f"host {self.name}: domain {name} does not exist")
        return domain

    # -- guest agent ------------------------------------------------------------------------

    def agent_command(
        self, name: str, command: str, arguments: dict[str, Any] | None = None, timeout: int = 5
    ) -> Any:
        """One guest-agent command; raises ``InfrastructureError`` when the agent does not answer."""
        domain = self._require(name)
        request = json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})})
        try:
            reply = libvirt_qemu.qemuAgentCommand(domain, request, timeout, 0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"guest agent of {name}: {command}: {exc}") from exc
        if reply is None:
            raise InfrastructureError(f"guest agent of {name}: {command}: no reply")
        return json.loads(reply).get("return")

    def agent_exec(
        self,
        name: str,
        path: str,
        arguments: list[str],
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ExecResult:
        """Run a program in the guest through the agent and wait for it (the agent has no
        completion event: its protocol is to ask for the status until the program exited)."""
        started = self.agent_command(
            name, "guest-exec", {"path": path, "arg": arguments, "capture-output": True}
        )
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.agent_command(name, "guest-exec-status", {"pid": started["pid"]})
            if status.get("exited"):
                return ExecResult(
                    exit_code=int(status.get("exitcode", -1)),
                    stdout=base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
                    stderr=base64.b64decode(status.get("err-data", "")).decode(errors="replace"),
                )
            if time.monotonic() > deadline:
                raise InfrastructureError(f"guest agent of {name}: {path} ran longer than {timeout_s:g}s")
            sleep(0.2)

    def guest_ipv4_addresses(self, name: str) -> list[str]:
        domain = self._require(name)
        try:
            interfaces = domain.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"guest agent of {name}: interface addresses: {exc}") from exc
        return [
            address["addr"]
            for interface in interfaces.values()
            for address in interface.get("addrs") or []
            if address.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and not address["addr"].startswith("127.")
        ]

    def set_authorized_keys(self, name: str, user: str, keys: list[str]) -> None:
        domain = self._require(name)
        try:
            domain.authorizedSSHKeysSet(user, keys, 0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"guest agent of {name}: cannot set ssh keys: {exc}") from exc

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, domain_name: str, listener: DomainListener) -> None:
        self.events.subscribe(domain_name, listener)

    def unsubscribe(self, domain_name: str) -> None:
        self.events.unsubscribe(domain_name)


def _run_of(metadata: str) -> str | None:
    """The run id in a domain's testbed metadata element."""
    start = metadata.find(":run>")
    if start < 0:
        return None
    end = metadata.find("<", start)
    return metadata[start + len(":run>") : end].strip() or None
