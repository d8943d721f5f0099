"""Deadlines, injectable: real threads in production, a hand-cranked clock in tests."""

import threading
from collections.abc import Callable, Hashable
from typing import Protocol


class Timers(Protocol):
    """Arms and cancels named deadlines; a canceled or re-armed deadline never fires."""

    def arm(self, key: Hashable, seconds: float, fire: Callable[[], None]) -> None: ...

    def cancel(self, key: Hashable) -> None: ...

    def cancel_all(self) -> None: ...


class ThreadTimers:
    """``threading.Timer`` per deadline, with a generation per key so stale firings are dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: dict[Hashable, tuple[int, threading.Timer]] = {}
        self._generation = 0

    def arm(self, key: Hashable, seconds: float, fire: Callable[[], None]) -> None:
        with self._lock:
            self._cancel_locked(key)
            self._generation += 1
            generation = self._generation
            timer = threading.Timer(seconds, self._fire, args=(key, generation, fire))
            timer.daemon = True
            self._timers[key] = (generation, timer)
            timer.start()

    def _fire(self, key: Hashable, generation: int, fire: Callable[[], None]) -> None:
        with self._lock:
            current = self._timers.get(key)
            if current is None or current[0] != generation:
                return
            del self._timers[key]
        fire()

    def cancel(self, key: Hashable) -> None:
        with self._lock:
            self._cancel_locked(key)

    def _cancel_locked(self, key: Hashable) -> None:
        entry = self._timers.pop(key, None)
        if entry is not None:
            entry[1].cancel()

    def cancel_all(self) -> None:
        with self._lock:
            for key in list(self._timers):
                self._cancel_locked(key)


class ManualTimers:
    """Deadlines on a clock that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}

    def arm(self, key: Hashable, seconds: float, fire: Callable[[], None]) -> None:
        self._due[key] = (self.now + seconds, fire)

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def cancel_all(self) -> None:
        self._due.clear()

    def armed(self) -> set[Hashable]:
        return set(self._due)

    def advance(self, seconds: float) -> None:
        """Move the clock and fire, in order, every deadline that came due."""
        self.now += seconds
        while True:
            due = sorted((when, str(key), key) for key, (when, _) in self._due.items() if when <= self.now)
            if not due:
                return
            _, _, key = due[0]
            _, fire = self._due.pop(key)
            fire()
