"""One libvirt host: its connection, the isolated guest network, the overlay pool, domains.

Every ``libvirt.libvirtError`` is translated here into ``InfrastructureError``: callers never
see libvirt's exceptions. Overlays are created through libvirt's storage API, so the same code
works for a remote ``qemu+ssh://`` host as for this machine.
"""

import contextlib
import hashlib
import ipaddress
import json
import threading
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from orchestrator.adapters.domain_xml import DOMAIN_PREFIX, METADATA_NAMESPACE
from orchestrator.adapters.kvm_probe import probe_kvm
from orchestrator.adapters.libvirt_events import DomainEventHub, DomainListener, EventLoop
from orchestrator.config import HostConfig
from orchestrator.errors import ConfigurationError, InfrastructureError

POOL_PREFIX = "endpoint-testbed-"


def pool_name(path: Path) -> str:
    """One libvirt pool per overlay directory, so two state directories never share a pool."""
    return POOL_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:10]


def _quiet_libvirt_errors(_context: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised as exceptions instead."""


libvirt.registerErrorHandler(_quiet_libvirt_errors, None)


def network_xml(name: str, bridge: str, cidr: str) -> str:
    """An isolated network: DHCP for guests, a host address to reach them, no route anywhere else."""
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise ConfigurationError(f"network_cidr: {exc}") from exc
    hosts = list(network.hosts())
    if len(hosts) < 8:
        raise ConfigurationError(f"network_cidr: {cidr} is too small for guests (at least /28)")
    return f"""<network>
  <name>{name}</name>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <ip address='{hosts[0]}' netmask='{network.netmask}'>
    <dhcp>
      <range start='{hosts[1]}' end='{hosts[-1]}'/>
    </dhcp>
  </ip>
</network>
"""


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


class LibvirtHost:
    """A connection to one libvirt host and the operations cells need from it."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.name = config.name
        self.events = DomainEventHub()
        self._connection: libvirt.virConnect | None = None
        self._pools: dict[Path, libvirt.virStoragePool] = {}
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        EventLoop.ensure_running()
        try:
            connection = libvirt.open(self.config.uri)
            if not self.config.is_local:
                connection.setKeepAlive(5, 3)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(
                f"host {self.name}: cannot connect to {self.config.uri}: {exc}"
            ) from exc
        self.events.attach(connection)
        self._connection = connection

    def close(self) -> None:
        if self._connection is not None:
            self.events.detach(self._connection)
            # Closing a broken connection has nothing left to clean up.
            with contextlib.suppress(libvirt.libvirtError):
                self._connection.close()
            self._connection = None
            self._pools = {}

    @property
    def connection(self) -> libvirt.virConnect:
        if self._connection is None:
            raise InfrastructureError(f"host {self.name}: not connected")
        return self._connection

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
        """Define and start the isolated network unless it already runs (safe to race)."""
        with self._lock:
            try:
                try:
                    network = self.connection.networkLookupByName(name)
                except libvirt.libvirtError:
                    network = self.connection.networkDefineXML(network_xml(name, bridge, cidr))
                if not network.isActive():
                    network.create()
            except libvirt.libvirtError as exc:
                if "already active" in str(exc) or "already exists" in str(exc):
                    return
                raise InfrastructureError(f"host {self.name}: guest network {name}: {exc}") from exc

    def ensure_pool(self, path: Path) -> libvirt.virStoragePool:
        """Define, start and refresh the overlay pool once per connection.

        Refreshing again later would race volume creation ("asynchronous jobs running").
        """
        with self._lock:
            if path in self._pools:
                return self._pools[path]
            try:
                try:
                    pool = self.connection.storagePoolLookupByName(pool_name(path))
                except libvirt.libvirtError:
                    pool = self.connection.storagePoolDefineXML(pool_xml(path), 0)
                    pool.build(0)
                if not pool.isActive():
                    pool.create(0)
                pool.refresh(0)
            except libvirt.libvirtError as exc:
                raise InfrastructureError(f"host {self.name}: storage pool at {path}: {exc}") from exc
            self._pools[path] = pool
            return pool

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

    def define_and_start(self, xml: str) -> None:
        try:
            domain = self.connection.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: domain definition refused: {exc}") from exc
        try:
            domain.create()
        except libvirt.libvirtError as exc:
            raise InfrastructureError(
                f"host {self.name}: domain {domain.name()} did not start: {exc}"
            ) from exc

    def _domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.connection.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise InfrastructureError(f"host {self.name}: lookup of {name}: {exc}") from exc

    def remove_domain(self, name: str) -> None:
        """Destroy (if running) and undefine; quietly done if it is already gone."""
        domain = self._domain(name)
        if domain is None:
            return
        try:
            if domain.isActive():
                domain.destroy()
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

    def testbed_domains(self) -> list[str]:
        """Names of every domain the testbed owns on this host (by metadata, else by name prefix)."""
        try:
            domains = self.connection.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise InfrastructureError(f"host {self.name}: cannot list domains: {exc}") from exc
        owned = []
        for domain in domains:
            try:
                domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NAMESPACE, 0)
                owned.append(domain.name())
            except libvirt.libvirtError:
                if domain.name().startswith(DOMAIN_PREFIX):
                    owned.append(domain.name())
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
