"""Whether a run's process is still alive: it holds an flock on <run dir>/.lock while it runs.

The kernel drops the lock when the process dies however it dies, so a reaper can tell a run that
is merely long from one whose process was killed, without trusting pid files.
"""

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunLock:
    """Held for as long as the run is in progress in this process."""

    def __init__(self, run_dir: Path) -> None:
        self._fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh run dir: nobody else holds it

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def run_is_alive(run_dir: Path) -> bool:
    """True while some process holds the run's lock (a run dir without one is not running)."""
    path = run_dir / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken: we only looked
    return False
