"""Where a cell runs: the seam between deciding what runs and running it.

Today a cell runs in a thread of this process (``ThreadExecutor``); a fleet puts the same
``CellDriver`` on remote agents fed by a job queue, behind the same two calls.
"""

import threading
import time
from collections.abc import Callable
from typing import Protocol

from orchestrator.core.outcomes import CellOutcome
from orchestrator.core.plan import CellPlan
from orchestrator.core.records import CellResult
from orchestrator.engine.cell_driver import CellDriver, ChangeListener, PortsFactory
from orchestrator.engine.timers import ThreadTimers, Timers


class CellControl(Protocol):
    """A started cell, as its run sees it."""

    def cancel(self, reason: str) -> None: ...


class CellExecutor(Protocol):
    def start(
        self,
        plan: CellPlan,
        make_ports: PortsFactory,
        on_change: ChangeListener,
        on_done: Callable[[CellResult], None],
    ) -> CellControl:
        """Start the cell; ``on_done`` is called exactly once, from any thread. Raises when the cell
        cannot even be set up (nothing was started then)."""
        ...


class ThreadExecutor:
    """One daemon thread per cell."""

    def __init__(
        self, make_timers: Callable[[], Timers] = ThreadTimers, clock: Callable[[], float] = time.time
    ) -> None:
        self._make_timers = make_timers
        self._clock = clock

    def start(
        self,
        plan: CellPlan,
        make_ports: PortsFactory,
        on_change: ChangeListener,
        on_done: Callable[[CellResult], None],
    ) -> CellControl:
        driver = CellDriver(plan, make_ports, self._make_timers(), on_change, self._clock)

        def work() -> None:
            try:
                result = driver.run()
            except BaseException as exc:  # noqa: BLE001 - the run must hear of this cell whatever happens
                result = CellResult(
                    plan.cell_id,
                    plan.image.name,
                    plan.image.kernel,
                    driver.host_name,
                    CellOutcome.INFRA_ERROR,
                    f"internal error ({type(exc).__name__}): {exc}",
                    attempt=plan.attempt,
                    retryable=True,
                )
            on_done(result)

        threading.Thread(target=work, name=f"cell-{plan.cell_id}-{plan.attempt}", daemon=True).start()
        return driver
