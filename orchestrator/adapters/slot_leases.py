"""Slots on a host shared by every testbed process on this machine, as flock'ed files.

A cell holds one slot file of its host locked for as long as it runs. Two ``testbed gate`` runs,
or a gate and the service, thus never put more cells on a host than it has slots, and a process
that dies (even by SIGKILL) releases its slots with its file descriptors: no lease outlives its
holder. A process with cells waiting holds a file under ``waiting/`` locked as well, so that one
releasing a slot can leave it to the others for a moment (``HostPool``): without that, the
process that frees a slot takes it again at once, and another one's cells starve. A later fleet
moves the same contract into PostgreSQL.
"""

import contextlib
import fcntl
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SlotLease:
    """One held slot: release it exactly once."""

    host: str
    slot: int
    fd: int


class SlotLeases:
    """Slot files under ``directory/<host>/slot-<n>.lock``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._held: dict[tuple[str, int], SlotLease] = {}
        self._waiting: tuple[Path, int] | None = None  # the announcement's file and its locked fd

    def _path(self, host: str, slot: int) -> Path:
        # Host names are validated, but a digest keeps any name a safe file name.
        safe = f"{host}-{hashlib.sha256(host.encode()).hexdigest()[:8]}"
        return self._directory / safe / f"slot-{slot}.lock"

    def _try_lock(self, path: Path) -> int | None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def acquire(self, host: str, slots: int) -> SlotLease | None:
        """Any free slot among the host's first ``slots``, or None when all are held (by anyone)."""
        with self._lock:
            for slot in range(slots):
                if (host, slot) in self._held:
                    continue
                fd = self._try_lock(self._path(host, slot))
                if fd is not None:
                    lease = SlotLease(host, slot, fd)
                    self._held[(host, slot)] = lease
                    return lease
        return None

    def busy(self, host: str, slots: int) -> int:
        """How many of the host's slots are held right now, by this process or any other."""
        with self._lock:
            count = 0
            for slot in range(slots):
                if (host, slot) in self._held:
                    count += 1
                    continue
                fd = self._try_lock(self._path(host, slot))
                if fd is None:
                    count += 1
                else:
                    os.close(fd)  # closing releases the lock: we only looked
            return count

    def release(self, lease: object) -> None:
        if not isinstance(lease, SlotLease):
            raise TypeError(f"not a slot lease of this process: {lease!r}")
        with self._lock:
            if self._held.pop((lease.host, lease.slot), None) is None:
                return
        with contextlib.suppress(OSError):
            os.close(lease.fd)

    def release_all(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for lease in held:
            with contextlib.suppress(OSError):
                os.close(lease.fd)

    # -- who else waits ---------------------------------------------------------------------

    def set_waiting(self, waiting: bool) -> None:
        """Say whether this table has cells waiting for a slot (other processes can see it)."""
        with self._lock:
            if waiting and self._waiting is None:
                # A new name each time: a reader tidying a stale file never removes a fresh one.
                path = self._directory / "waiting" / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.lock"
                fd = self._try_lock(path)
                self._waiting = (path, fd) if fd is not None else None
            elif not waiting and self._waiting is not None:
                path, fd = self._waiting
                path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._waiting = None

    def others_waiting(self) -> bool:
        """Whether another table (another process) has cells waiting for a slot right now."""
        directory = self._directory / "waiting"
        if not directory.is_dir():
            return False
        with self._lock:
            mine = self._waiting[0].name if self._waiting is not None else None
        for path in directory.iterdir():
            if path.name == mine:
                continue
            fd = self._try_lock(path)
            if fd is None:
                return True
            path.unlink(missing_ok=True)  # its process is gone (or stopped waiting): tidy up
            os.close(fd)
        return False
