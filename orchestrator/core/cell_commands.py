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
class RunProbe:
    """Ask the guest how it is (agent, boot id, sshd, sysctls, taint, console; the candidate's own
    health check when ``health_check``) and report a ``ProbeFinished``."""

    boot: int
    health_check: bool


@dataclass(frozen=True)
class InjectNmi:
    """Send the silent guest an NMI: with ``unknown_nmi_panic`` it panics and prints where it hung."""


@dataclass(frozen=True)
class ResetGuest:
    """Reset the crashed guest so it boots again (the observe crash policy)."""


@dataclass(frozen=True)
class Reconnect:
    """Connect to the host again and report the domain's condition (``HostReconnected``)."""


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
    | RunProbe
    | InjectNmi
    | ResetGuest
    | Reconnect
    | CollectEvidence
    | Teardown
)
