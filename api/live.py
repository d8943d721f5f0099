"""From the engine's threads to the service's event loop: who wants to hear that a run has news.

Event streams read the store, which has every event before anyone hears of it (the bus persists
first). They sleep between reads until ``RunWakeups`` tells them their run has news, or a poll
interval passes — the poll covers events written by another process (a ``testbed gate`` on this
machine sharing the store) and a bridge that fell behind. ``EventBridge`` is the one subscriber
of the bus that turns its events into wake-ups and metrics; a slow stream never holds up a cell.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from orchestrator.core.records import RunEvent
from orchestrator.engine.event_bus import EventBus, Subscription

log = logging.getLogger(__name__)


class RunWakeups:
    """asyncio events per run, set from any thread when the run has news."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[str, set[asyncio.Event]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the streams run on (the app's, known once it starts)."""
        self._loop = loop

    def notify(self, run_id: str) -> None:
        """Safe from any thread; does nothing before the app's loop is known or after it closed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._wake, run_id)

    def _wake(self, run_id: str) -> None:
        for listener in self._listeners.get(run_id, ()):
            listener.set()

    @contextlib.contextmanager
    def listen(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``run_id`` has news; clear it before reading, wait on it after."""
        listener = asyncio.Event()
        self._listeners.setdefault(run_id, set()).add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners.get(run_id, set())
            listeners.discard(listener)
            if not listeners:
                self._listeners.pop(run_id, None)


class EventBridge:
    """Subscribes to every run on the bus and hands each event to ``on_event`` (in its thread)."""

    def __init__(self, bus: EventBus, on_event: Callable[[RunEvent], None]) -> None:
        self._bus = bus
        self._on_event = on_event
        self._stopping = threading.Event()
        self._subscription: Subscription | None = None
        self._thread = threading.Thread(target=self._pump, name="event-bridge", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.close()
        self._thread.join(timeout=5)

    def _pump(self) -> None:
        while not self._stopping.is_set():
            # A subscription cut off for falling behind ends its iteration: subscribe again (the
            # streams catch up from the store by themselves).
            self._subscription = self._bus.subscribe()
            if self._stopping.is_set():
                self._subscription.close()
                return
            for event in self._subscription:
                try:
                    self._on_event(event)
                except Exception:  # a metrics bug must not stop the wake-ups
                    log.exception("handling run event %s/%s failed", event.run_id, event.sequence)
