"""Which pending cell goes to which host: a pure function of capacity and demand."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostCapacity:
    """A host's room for cells right now."""

    name: str
    max_cells: int
    running: int
    memory_free_mib: int
    healthy: bool = True
    kvm: bool = False  # hardware virtualization: the only kind of host a cell needing it may go to

    @property
    def free_slots(self) -> int:
        return max(0, self.max_cells - self.running) if self.healthy else 0


@dataclass(frozen=True)
class Demand:
    """What one pending cell needs."""

    cell_id: str
    memory_mib: int
    needs_kvm: bool = False  # its guest family cannot run emulated (Windows)


def assign(pending: Sequence[Demand], hosts: Sequence[HostCapacity]) -> Mapping[str, str]:
    """Place pending cells, in plan order, on the host with the most free slots that fits them
    (memory, and KVM for a cell that needs it).

    Returns ``{cell_id: host_name}`` for the cells that can start now; the rest wait.
    Ties go to the host listed first, so placement is deterministic.
    """
    slots = {host.name: host.free_slots for host in hosts}
    memory = {host.name: host.memory_free_mib for host in hosts}
    kvm = {host.name: host.kvm for host in hosts}
    order = [host.name for host in hosts]
    placed: dict[str, str] = {}
    for demand in pending:
        fitting = [
            name
            for name in order
            if slots[name] > 0 and memory[name] >= demand.memory_mib and (kvm[name] or not demand.needs_kvm)
        ]
        if not fitting:
            continue
        chosen = max(fitting, key=lambda name: (slots[name], -order.index(name)))
        placed[demand.cell_id] = chosen
        slots[chosen] -= 1
        memory[chosen] -= demand.memory_mib
    return placed
