"""What the engine needs from the outside world to run one cell: the ports guest families implement.

They live in the core so that the layers implementing them (guests/, adapters/) never import the
engine that drives them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.core.cell_events import CellEvent
from orchestrator.core.outcomes import CellOutcome
from orchestrator.core.plan import InstallStep

Post = Callable[[CellEvent], None]
"""Hands an event to the cell's machine; safe from any thread."""


@dataclass
class Evidence:
    """What collecting evidence produced."""

    directory: str | None = None
    crash: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


class CellPorts(Protocol):
    """What a cell needs from its host and guest channel.

    Long operations (the readiness probe, a health probe, an install step, reconnecting) run in
    the ports' own threads and report back with ``post``; after ``stop_probe``/``cancel_step``
    they post nothing more. The rest return when done and raise ``TestbedError`` on trouble.
    """

    host_name: str

    def provision(self) -> None: ...

    def start_probe(self, boot: int, stale_mark: str | None) -> None: ...

    def start_health_probe(self, boot: int, health_check: bool) -> None: ...

    def stop_probe(self) -> None: ...

    def start_step(self, step: InstallStep) -> None: ...

    def cancel_step(self) -> None: ...

    def request_reboot(self, boot: int) -> None: ...

    def inject_nmi(self) -> None: ...

    def reset_guest(self) -> None: ...

    def start_reconnect(self) -> None: ...

    def collect_evidence(self, outcome: CellOutcome, reason: str, summary: dict[str, Any]) -> Evidence: ...

    def teardown(self) -> None: ...
