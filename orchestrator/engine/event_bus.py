"""Run events: persisted first, then fanned out — a slow or dead subscriber never blocks a cell.

Every event is written to the run store (with its sequence number) before any subscriber hears of
it. Each subscriber has its own bounded queue; one that falls behind is cut off (``overflowed``)
rather than waited for, and catches up from the store with the last sequence it saw — the
``Last-Event-ID`` of Server-Sent Events.
"""

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from orchestrator.core.records import RunEvent, RunResult


class RunStore(Protocol):
    """Where runs and their events are kept (SQL in the service; evidence files in any case)."""

    def create_run(
        self,
        run_id: str,
        plan: dict[str, Any],
        *,
        candidate_id: str | None,
        matrix_id: str | None,
        priority: int,
        submitted_by: str | None,
        evidence_dir: str,
    ) -> None: ...

    def append_event(self, event: RunEvent) -> None: ...

    def finish_run(self, result: RunResult) -> None: ...


@runtime_checkable
class EventHistory(Protocol):
    """A store that can replay what a subscriber missed."""

    def events_after(self, run_id: str, after_sequence: int, limit: int = 1000) -> list[RunEvent]: ...


class Subscription:
    """One subscriber's view of the stream: iterate, or ``get`` with a timeout."""

    def __init__(self, bus: "EventBus", run_id: str | None, size: int) -> None:
        self.run_id = run_id
        self.overflowed = False
        self.closed = False
        self.last_sequence = 0
        self._bus = bus
        self._queue: queue.Queue[RunEvent | None] = queue.Queue(maxsize=size)

    def offer(self, event: RunEvent) -> bool:
        """Non-blocking; False when this subscriber has fallen too far behind (it is then closed)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.overflowed = True
            return False
        return True

    def get(self, timeout: float | None = None) -> RunEvent | None:
        """The next event, or None on timeout or when the subscription was closed.

        Of one run's stream each event comes once, in order: a replayed event that also arrived
        live is dropped by its sequence number.
        """
        while True:
            try:
                event = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
            if event is None or self.run_id is None:
                return event
            if event.sequence > self.last_sequence:
                self.last_sequence = event.sequence
                return event

    def close(self) -> None:
        self.closed = True
        self._bus.unsubscribe(self)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def __iter__(self) -> Iterator[RunEvent]:
        """Until closed, or cut off for falling behind (then catch up from the store)."""
        while True:
            event = self.get(timeout=0.5)
            if event is not None:
                yield event
            elif self.closed or self.overflowed:
                return


class EventBus:
    """Persist, then fan out. ``publish`` is called with events already numbered by their run."""

    def __init__(self, store: RunStore | None = None, queue_size: int = 1000) -> None:
        self._store = store
        self._queue_size = queue_size
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()

    def publish(self, event: RunEvent) -> None:
        if self._store is not None:
            self._store.append_event(event)
        with self._lock:
            subscribers = [s for s in self._subscribers if s.run_id in (None, event.run_id)]
        for subscriber in subscribers:
            if not subscriber.offer(event):
                self.unsubscribe(subscriber)

    def subscribe(self, run_id: str | None = None, after: int | None = None) -> Subscription:
        """Everything from now on (of one run, or of all); with ``after``, first what was missed."""
        subscription = Subscription(self, run_id, self._queue_size)
        if after is not None:
            subscription.last_sequence = after
        with self._lock:
            self._subscribers.append(subscription)
        if after is not None and run_id is not None and isinstance(self._store, EventHistory):
            for event in self._store.events_after(run_id, after, limit=self._queue_size):
                subscription.offer(event)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
