"""One long-lived pool of hosts per process, shared by every run: slots are leased, never assumed.

Runs ask for a slot per cell (a ticket); the pool grants tickets in order of priority, then of
arrival (FIFO), as slots free up on any host — its own cells finishing, or another process on the
same machine releasing a slot (the leases are host-wide, so the pool looks again every
``recheck_s``). A pool that frees a slot while another process has cells waiting holds back for
``yield_s`` so that they can take it (else it takes it again at once and theirs starve: a
one-slot service once waited twenty minutes behind a batch of gates). Where a cell goes is the
pure scheduler's decision (``core.scheduler.assign``). A ticket a verdict already waits on (a
failed cell's control twin) goes before the others of its priority.
"""

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.core.scheduler import Demand, HostCapacity, assign
from orchestrator.errors import TestbedError


class PoolHost(Protocol):
    """What the pool needs to know of a host."""

    name: str

    def max_cells(self) -> int: ...

    def free_memory_mib(self) -> int: ...

    def total_memory_mib(self) -> int: ...

    def domain_type(self) -> str: ...  # "kvm" or "qemu" (TCG)


class Lease(Protocol):
    """A held slot; which host it is on."""

    @property
    def host(self) -> str: ...


class Leases(Protocol):
    """Host-wide slot leases (``adapters.slot_leases.SlotLeases``)."""

    def acquire(self, host: str, slots: int) -> Lease | None: ...

    def busy(self, host: str, slots: int) -> int: ...

    def release(self, lease: object) -> None: ...

    def set_waiting(self, waiting: bool) -> None: ...

    def others_waiting(self) -> bool: ...


Grant = Callable[[Lease], None]


@dataclass(frozen=True)
class Ticket:
    """A cell waiting for a slot."""

    run_id: str
    cell_id: str
    memory_mib: int
    priority: int  # higher goes first
    order: int  # arrival, for FIFO among equals
    grant: Grant
    ahead: bool = False  # before the others of its priority: a verdict already waits on this cell
    needs_kvm: bool = False  # only a host with hardware virtualization may take it


@dataclass(frozen=True)
class PoolStatus:
    """For /metrics and the status page."""

    queued: int
    slots: dict[str, tuple[int, int]]  # host -> (busy, max)


class HostPool:
    """Grants slot leases to waiting cells; ``request``/``withdraw``/``release`` are thread-safe."""

    def __init__(
        self,
        hosts: Sequence[PoolHost],
        leases: Leases,
        *,
        recheck_s: float = 1.0,
        yield_s: float | None = None,
    ) -> None:
        self._hosts = {host.name: host for host in hosts}
        self._leases = leases
        self._recheck_s = recheck_s
        self._yield_s = 2 * recheck_s if yield_s is None else yield_s  # others look every recheck_s
        self._held_back_until = 0.0
        self._tickets: list[Ticket] = []
        self._kvm: dict[str, bool] = {}  # what each host answered once: its accelerator stays
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="host-pool", daemon=True)
        self._thread.start()

    @property
    def host_names(self) -> list[str]:
        return list(self._hosts)

    def fits(self, memory_mib: int, *, needs_kvm: bool = False) -> bool:
        """Whether any host could ever take this cell (else waiting for it is forever)."""
        for host in self._hosts.values():
            try:
                if (
                    host.max_cells() > 0
                    and host.total_memory_mib() >= memory_mib
                    and (not needs_kvm or self._offers_kvm(host))
                ):
                    return True
            except (TestbedError, OSError):
                continue
        return False

    def request(
        self,
        run_id: str,
        cell_id: str,
        memory_mib: int,
        priority: int,
        grant: Grant,
        *,
        ahead: bool = False,
        needs_kvm: bool = False,
    ) -> None:
        with self._changed:
            order = next(self._order)
            ticket = Ticket(run_id, cell_id, memory_mib, priority, order, grant, ahead, needs_kvm)
            self._tickets.append(ticket)
            self._changed.notify()

    def withdraw(self, run_id: str) -> list[str]:
        """Forget a run's waiting tickets; returns their cell ids."""
        with self._changed:
            gone = [ticket.cell_id for ticket in self._tickets if ticket.run_id == run_id]
            self._tickets = [ticket for ticket in self._tickets if ticket.run_id != run_id]
            return gone

    def release(self, lease: Lease) -> None:
        self._leases.release(lease)
        others = self._leases.others_waiting()
        with self._changed:
            if others:
                self._held_back_until = time.monotonic() + self._yield_s
            self._changed.notify()

    def status(self) -> PoolStatus:
        with self._changed:
            queued = len(self._tickets)
        return PoolStatus(queued, {name: (busy, most) for name, (busy, most, _) in self._capacity().items()})

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout=5)
        self._leases.set_waiting(False)

    def _loop(self) -> None:
        while True:
            with self._changed:
                if self._closed:
                    return
                self._changed.wait(self._recheck_s)
                if self._closed:
                    return
                waiting = sorted(self._tickets, key=lambda t: (-t.priority, not t.ahead, t.order))
                held_back = time.monotonic() < self._held_back_until
            self._leases.set_waiting(bool(waiting))
            if waiting and not held_back:
                self._dispatch(waiting)

    def _offers_kvm(self, host: PoolHost) -> bool:
        """Whether the host runs guests with KVM; asked once (a host that cannot answer now is
        asked again next time, and takes no cell that needs KVM meanwhile)."""
        if host.name not in self._kvm:
            try:
                self._kvm[host.name] = host.domain_type() == "kvm"
            except (TestbedError, OSError):
                return False
        return self._kvm[host.name]

    def _capacity(self) -> dict[str, tuple[int, int, int]]:
        """host -> (busy slots, max slots, free memory); a host that cannot answer gets nothing."""
        capacity = {}
        for name, host in self._hosts.items():
            try:
                most = host.max_cells()
                capacity[name] = (self._leases.busy(name, most), most, host.free_memory_mib())
            except (TestbedError, OSError):
                capacity[name] = (0, 0, 0)
        return capacity

    def _dispatch(self, waiting: list[Ticket]) -> None:
        capacity = self._capacity()
        hosts = [
            HostCapacity(name, most, busy, memory, healthy=most > 0, kvm=self._offers_kvm(self._hosts[name]))
            for name, (busy, most, memory) in capacity.items()
        ]
        demands = [Demand(t.cell_id + "\0" + str(t.order), t.memory_mib, t.needs_kvm) for t in waiting]
        placements = assign(demands, hosts)
        for ticket in waiting:
            host = placements.get(ticket.cell_id + "\0" + str(ticket.order))
            if host is None:
                continue
            lease = self._leases.acquire(host, capacity[host][1])
            if lease is None:
                continue  # another process took the slot since we looked: next round
            with self._changed:
                if ticket not in self._tickets:  # withdrawn meanwhile
                    self._leases.release(lease)
                    continue
                self._tickets.remove(ticket)
            ticket.grant(lease)
