"""What the cell state machine asks the outside world to do: its outputs."""

from dataclasses import dataclass

from orchestrator.core.cell_events import Timer
from orchestrator.core.outcomes import CellOutcome
from orchestrator.core.plan import InstallStep


@dataclass(frozen=True)
class Provision:
    """Clone the overlay, define the domain from its XML, start it."""


@dataclass(frozen=True)
class ArmTimer:
    """Start (or restart) a deadline."""

    timer: Timer
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    """Forget a deadline; a late firing of it must not reach the machine."""

    timer: Timer


@dataclass(frozen=True)
class ProbeReadiness:
    """Ask the guest until it answers from a boot whose mark is not ``stale_mark``."""

    boot: int
    stale_mark: str | None


@dataclass(frozen=True)
class StopProbe:
    """Stop asking the guest."""


@dataclass(frozen=True)
class RunStep:
    """Run an install step (ansible playbook inside the guest)."""

    step: InstallStep


@dataclass(frozen=True)
class CancelStep:
    """Abort the running install step."""


@dataclass(frozen=True)
class RequestReboot:
    """Ask the guest to reboot cleanly."""

    boot: int


@dataclass(frozen=True)
class CollectEvidence:
    """Keep console, domain log, crash report and timings before anything is removed."""

    outcome: CellOutcome
    reason: str


@dataclass(frozen=True)
class Teardown:
    """Destroy and undefine the domain, delete the overlay, whatever happened."""


CellCommand = (
    Provision
    | ArmTimer
    | CancelTimer
    | ProbeReadiness
    | StopProbe
    | RunStep
    | CancelStep
    | RequestReboot
    | CollectEvidence
    | Teardown
)
