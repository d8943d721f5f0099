"""Injectable deadlines: a hand-cranked clock for tests, real threads in production."""

import threading

import pytest

from orchestrator.engine.timers import ManualTimers, ThreadTimers

pytestmark = pytest.mark.unit

WAIT_S = 2.0  # generous bound for a timer thread to run; only reached if something is broken


class Recorder:
    def __init__(self) -> None:
        self.fired: list[str] = []

    def __call__(self, name: str):
        return lambda: self.fired.append(name)


# -- ManualTimers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "fired"),
    [
        ([4.9], []),
        ([5.0], ["a"]),
        ([2.0, 2.0], []),
        ([2.0, 2.0, 1.0], ["a"]),
        ([100.0], ["a"]),
    ],
)
def test_manual_fires_once_when_due(steps, fired):
    timers, record = ManualTimers(), Recorder()
    timers.arm("a", 5.0, record("a"))
    for seconds in steps:
        timers.advance(seconds)
    assert record.fired == fired
    timers.advance(100.0)
    assert record.fired == ["a"]  # once, whenever it came due
    assert timers.armed() == set()


def test_manual_does_not_fire_before_due():
    timers, record = ManualTimers(), Recorder()
    timers.arm("a", 5.0, record("a"))
    timers.advance(4.999)
    assert record.fired == []
    assert timers.armed() == {"a"}


def test_manual_rearm_replaces_the_old_deadline():
    timers, record = ManualTimers(), Recorder()
    timers.arm("a", 5.0, record("stale"))
    timers.advance(3.0)
    timers.arm("a", 5.0, record("fresh"))  # due at 8 now
    timers.advance(4.0)
    assert record.fired == []
    timers.advance(1.0)
    assert record.fired == ["fresh"]


@pytest.mark.parametrize("how", ["cancel", "cancel_all"])
def test_manual_canceled_deadlines_never_fire(how):
    timers, record = ManualTimers(), Recorder()
    timers.arm("a", 1.0, record("a"))
    timers.arm("b", 1.0, record("b"))
    if how == "cancel":
        timers.cancel("a")
        expected = ["b"]
    else:
        timers.cancel_all()
        expected = []
    timers.advance(10.0)
    assert record.fired == expected
    timers.cancel("never-armed")  # cancelling the unknown is harmless


def test_manual_fires_due_deadlines_in_time_order_then_by_key():
    timers, record = ManualTimers(), Recorder()
    timers.arm("late", 3.0, record("late"))
    timers.arm("b", 1.0, record("b"))
    timers.arm("a", 1.0, record("a"))
    timers.arm("early", 0.5, record("early"))
    timers.arm("future", 30.0, record("future"))
    timers.advance(5.0)
    assert record.fired == ["early", "a", "b", "late"]
    assert timers.armed() == {"future"}


def test_manual_deadline_armed_by_a_firing_one_counts_from_the_advanced_clock():
    timers, record = ManualTimers(), Recorder()

    def first() -> None:
        record.fired.append("first")
        timers.arm("now", 0.0, record("now"))  # due at once: fires within the same advance
        timers.arm("later", 1.0, record("later"))  # due one second after the advanced clock

    timers.arm("first", 1.0, first)
    timers.advance(5.0)
    assert record.fired == ["first", "now"]
    assert timers.armed() == {"later"}
    timers.advance(1.0)
    assert record.fired == ["first", "now", "later"]


def test_manual_a_firing_deadline_can_cancel_another_due_one():
    timers, record = ManualTimers(), Recorder()

    def first() -> None:
        record.fired.append("first")
        timers.cancel("second")

    timers.arm("first", 1.0, first)
    timers.arm("second", 2.0, record("second"))
    timers.advance(5.0)
    assert record.fired == ["first"]


# -- ThreadTimers ---------------------------------------------------------------------------------


@pytest.fixture
def thread_timers():
    timers = ThreadTimers()
    yield timers
    timers.cancel_all()


def test_thread_timer_fires(thread_timers):
    fired = threading.Event()
    thread_timers.arm("a", 0.01, fired.set)
    assert fired.wait(WAIT_S)


def test_thread_timer_rearm_drops_the_stale_one(thread_timers):
    order: list[str] = []
    fresh = threading.Event()
    thread_timers.arm("a", 0.01, lambda: order.append("stale"))
    thread_timers.arm("a", 0.05, lambda: (order.append("fresh"), fresh.set()))
    assert fresh.wait(WAIT_S)
    assert order == ["fresh"]  # the stale one was due first, and still never fired


@pytest.mark.parametrize("how", ["cancel", "cancel_all"])
def test_thread_timer_canceled_never_fires(thread_timers, how):
    order: list[str] = []
    witness = threading.Event()
    thread_timers.arm("a", 0.01, lambda: order.append("canceled"))
    if how == "cancel":
        thread_timers.cancel("a")
    else:
        thread_timers.cancel_all()
    thread_timers.arm("witness", 0.05, lambda: (order.append("witness"), witness.set()))
    assert witness.wait(WAIT_S)
    assert order == ["witness"]


def test_thread_timers_keys_are_independent(thread_timers):
    fired = {key: threading.Event() for key in ("a", "b")}
    thread_timers.arm("a", 0.01, fired["a"].set)
    thread_timers.arm("b", 0.01, fired["b"].set)
    thread_timers.cancel("a")
    assert fired["b"].wait(WAIT_S)
    assert not fired["a"].is_set()


def test_thread_timer_callback_may_rearm_its_own_key(thread_timers):
    """The callback runs outside the lock: re-arming from it neither deadlocks nor is dropped."""
    count: list[int] = []
    second = threading.Event()

    def fire() -> None:
        count.append(1)
        if len(count) == 1:
            thread_timers.arm("a", 0.01, fire)
        else:
            second.set()

    thread_timers.arm("a", 0.01, fire)
    assert second.wait(WAIT_S)
    assert len(count) == 2
