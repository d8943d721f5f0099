"""What can happen to a cell: the inputs of the cell state machine.

Adapters translate the outside world into these (a libvirt lifecycle callback becomes
``DomainCrashed``; an ansible-runner status becomes ``StepFinished``); the engine feeds them in.
"""

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.core.outcomes import Blame
from orchestrator.core.plan import InstallStep
from orchestrator.core.probe_rules import ProbeReport


class Timer(StrEnum):
    """The deadlines a cell arms."""

    READY = "ready"  # the current boot must answer the readiness probe before it fires
    STABILITY = "stability"  # a ready guest must not crash or reset before it fires; then it is probed
    SOAK = "soak"  # the last boot stays up this long more; then it is probed again
    PROBE = "probe"  # a health probe must report back before it fires
    INSTALL = "install"  # an install step must finish before it fires
    NMI_GRACE = "nmi_grace"  # after an NMI was injected into a silent guest: time for its crash dump
    CELL = "cell"  # the whole cell: catches a port that never reports back


class DomainCondition(StrEnum):
    """What libvirt says of a domain after the connection to it was lost and made again."""

    RUNNING = "running"  # still running (or paused by us): events in between may be missing
    CRASHED = "crashed"  # the guest crashed while nobody was listening
    STOPPED = "stopped"  # no longer running, without a crash
    MISSING = "missing"  # the domain is gone


@dataclass(frozen=True)
class Begin:
    """The scheduler gave the cell a host slot."""


@dataclass(frozen=True)
class Provisioned:
    """Overlay cloned, domain defined and started."""


@dataclass(frozen=True)
class GuestAnswered:
    """The readiness probe got an answer from a boot identified by ``boot_mark``."""

    boot_mark: str


@dataclass(frozen=True)
class TimerFired:
    """A deadline armed by the machine passed."""

    timer: Timer


@dataclass(frozen=True)
class DomainCrashed:
    """The hypervisor reports a guest crash (pvpanic / Hyper-V crash MSRs)."""

    detail: str  # e.g. "panicked", "crashloaded"


@dataclass(frozen=True)
class DomainReset:
    """The guest reset (libvirt REBOOT event): requested by us, or by itself.

    One reboot can reset the machine several times within a fraction of a second (the kernel's
    reset, then the firmware's own); ``at`` (monotonic seconds) lets the machine see a burst as one.
    """

    at: float | None = None


@dataclass(frozen=True)
class DomainStopped:
    """The domain stopped running without a crash report."""

    detail: str  # "shutdown" (the guest powered off), "destroyed", "failed" (QEMU died)
    guest_initiated: bool


@dataclass(frozen=True)
class StepFinished:
    """An install step ended; ``blame`` says whose fault a failure is.

    ``unreachable``: the channel lost the guest mid-step (SSH dropped). Whether that is a hang, a
    cut network or a passing glitch is for the machine to find out with a probe.
    """

    step: InstallStep
    ok: bool
    blame: Blame = Blame.CANDIDATE
    detail: str = ""
    unreachable: bool = False


@dataclass(frozen=True)
class ProbeFinished:
    """A health probe (agent, boot id, sshd, sysctls, taint, console, the candidate's check) ended."""

    report: ProbeReport


@dataclass(frozen=True)
class InfraFailed:
    """The testbed could not do what the machine asked (provision, probe, reboot)."""

    detail: str


@dataclass(frozen=True)
class HostLost:
    """The connection to the cell's libvirt host broke (libvirt's close callback)."""

    detail: str


@dataclass(frozen=True)
class HostReconnected:
    """The connection was made again and the domain's state read anew; ``detail`` says how."""

    condition: DomainCondition
    detail: str = ""


@dataclass(frozen=True)
class CancelRequested:
    """A person or fail-fast wants the cell stopped."""

    reason: str


@dataclass(frozen=True)
class TornDown:
    """Evidence kept, domain removed, overlay deleted."""


CellEvent = (
    Begin
    | Provisioned
    | GuestAnswered
    | TimerFired
    | DomainCrashed
    | DomainReset
    | DomainStopped
    | StepFinished
    | ProbeFinished
    | InfraFailed
    | HostLost
    | HostReconnected
    | CancelRequested
    | TornDown
)
