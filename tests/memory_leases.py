"""Slot leases in memory, for engines under test in one process (the flock'ed ones,
adapters.slot_leases, are tested on their own)."""

import threading
from dataclasses import dataclass


class MemoryLeases:
    """Slot leases within this process."""

    @dataclass(frozen=True)
    class Lease:
        host: str
        slot: int

    def __init__(self) -> None:
        self._held: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def acquire(self, host: str, slots: int) -> "MemoryLeases.Lease | None":
        with self._lock:
            for slot in range(slots):
                if (host, slot) not in self._held:
                    self._held.add((host, slot))
                    return MemoryLeases.Lease(host, slot)
        return None

    def busy(self, host: str, slots: int) -> int:
        with self._lock:
            return sum((host, slot) in self._held for slot in range(slots))

    def release(self, lease: object) -> None:
        if isinstance(lease, MemoryLeases.Lease):
            with self._lock:
                self._held.discard((lease.host, lease.slot))

    def set_waiting(self, waiting: bool) -> None:
        del waiting  # one process: nobody else to tell

    def others_waiting(self) -> bool:
        return False
