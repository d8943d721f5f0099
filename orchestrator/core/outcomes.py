"""The words a cell and a run are described with; they serialize as-is to JSON, the API and the page."""

from enum import StrEnum


class CellState(StrEnum):
    """Where a cell is in its journey (see ``cell_machine`` for the transitions)."""

    PENDING = "pending"  # planned, waiting for a host slot
    PROVISIONING = "provisioning"  # overlay cloned, domain being defined and started
    BOOTING = "booting"  # domain running, waiting for the readiness probe of this boot
    STABILIZING = "stabilizing"  # probe answered; the guest must stay up for the stability window
    PROBING = "probing"  # the guest is asked how it is: agent, boot id, sshd, sysctls, taint, console, health
    INSTALLING = "installing"  # an install step (co-installed product or candidate) is running
    SOAKING = "soaking"  # the last boot must stay up for the soak window: delayed crashes show here
    DIAGNOSING = "diagnosing"  # the guest went silent: an NMI was sent so the console shows where it hung
    RECONNECTING = "reconnecting"  # the libvirt connection broke; the domain's state is being read anew
    CLEANING_UP = "cleaning_up"  # outcome known; evidence being collected, domain being removed
    DONE = "done"  # finished; the outcome is final


class CellOutcome(StrEnum):
    """How a cell ended."""

    PASSED = "passed"  # every boot became ready and stayed up
    CRASHED = "crashed"  # kernel panic / BSOD reported by the hypervisor, or an unexpected reset
    BOOT_LOOP = "boot_loop"  # the guest kept resetting without becoming ready
    HUNG = "hung"  # no readiness before the deadline
    DEGRADED = "degraded"  # boots, but a required health probe fails
    INSTALL_FAILED = "install_failed"  # the co-installed product's or candidate's installer failed
    INFRA_ERROR = "infra_error"  # host, libvirt, image or channel trouble: not the candidate's fault
    CANCELED = "canceled"  # stopped by the user or by fail-fast before an answer


CANDIDATE_FAILURES = frozenset(
    {
        CellOutcome.CRASHED,
        CellOutcome.BOOT_LOOP,
        CellOutcome.HUNG,
        CellOutcome.DEGRADED,
        CellOutcome.INSTALL_FAILED,
    }
)
"""Outcomes that count against the candidate."""


def as_declared(observed: CellOutcome | None, expected_outcome: CellOutcome | None) -> bool:
    """A control image that did what it is there to do: the verdict counts it as a pass."""
    return expected_outcome is not None and observed is expected_outcome


class RunVerdict(StrEnum):
    """The answer a run gives about its candidate."""

    PASSED = "passed"  # every cell passed
    FAILED = "failed"  # at least one cell failed because of the candidate
    INCONCLUSIVE = "inconclusive"  # no candidate failure, but some cell could not give an answer


class Blame(StrEnum):
    """Who is to blame when something other than a clean answer happens (after LAVA's error classes)."""

    CANDIDATE = "candidate"  # the artifact under test
    INFRASTRUCTURE = "infrastructure"  # host, hypervisor, image, network, channel
    CONFIGURATION = "configuration"  # the matrix, the candidate manifest or the settings
    INTERNAL = "internal"  # a bug in the testbed itself
    CANCELED = "canceled"  # a person or fail-fast stopped it
