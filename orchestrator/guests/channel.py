"""How the testbed talks to a running guest of one OS family, separate from which machine it is.

The generic libvirt domain cell (``domain_cell``) owns the machine's lifecycle — overlay, domain,
events, threads, evidence, teardown — and asks a family's ``GuestChannel`` the questions only the
guest OS can answer: is it ready, how is it, install this, reboot. A ``GuestFamily`` makes the
domain definition and the channel, and reads crash reports out of the evidence.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestrator.core.cell_events import StepFinished
from orchestrator.core.plan import CellPlan, InstallStep
from orchestrator.core.probe_rules import ProbeReport


class NotReadyError(Exception):
    """The guest is up but not ready in every respect yet; ask again."""


@dataclass(frozen=True)
class GuestEndpoint:
    """How to reach a ready guest."""

    boot_mark: str  # tells this boot from every other one (Linux: boot id; Windows: LastBootUpTime)
    address: str
    known_hosts: Path | None = None  # the guest's host key, pinned from what its agent reported


@dataclass(frozen=True)
class DomainFiles:
    """Where one cell's domain keeps what it writes on the host."""

    console_log: Path
    overlay: Path


class GuestChannel(Protocol):
    """Questions for one guest; every method blocks and is called from a worker thread."""

    def ask_ready(self, stale_mark: str | None) -> GuestEndpoint:
        """One readiness attempt: an endpoint, or ``NotReadyError``/``TestbedError`` to ask again."""
        ...

    def probe(self, endpoint: GuestEndpoint | None, *, health_check: bool) -> ProbeReport:
        """Gather the facts of a health probe; never raises for the guest's trouble (that is a fact)."""
        ...

    def run_step(self, endpoint: GuestEndpoint, step: InstallStep, cancel: threading.Event) -> StepFinished:
        """Install one step; the result says whose fault a failure is, or that the guest dropped off."""
        ...

    def reboot(self) -> None:
        """Ask the guest to reboot cleanly."""
        ...


class GuestFamily(Protocol):
    """An OS family as a plug-in: its domain definition, its channel, its crash parser."""

    name: str
    needs_kvm: bool  # refuse the family up front on hosts without hardware virtualization
    runs_activity: bool  # its channel runs the matrix's activity workload (a POSIX sh script)

    def domain_xml(self, plan: CellPlan, domain: str, files: DomainFiles, domain_type: str) -> str: ...

    def channel(self, plan: CellPlan, domain: str) -> GuestChannel: ...

    def crash_report(self, console_log: Path, domain_log: str) -> dict[str, Any] | None: ...


# -- what a family may add ---------------------------------------------------------------------------


@runtime_checkable
class StagesHostFiles(Protocol):
    """A family whose domains need private files on the host before they start (Linux: its own copy
    of the kernel and initrd, see linux/family.py). Local hosts only: the domain cell calls it
    between creating the overlay and rendering the domain."""

    def stage_host_files(self, plan: CellPlan, files: DomainFiles) -> None: ...


@runtime_checkable
class LeavesHostFiles(Protocol):
    """A family whose domains leave files on the host that libvirt keeps after a transient domain
    is gone (Windows: the per-domain UEFI variable store). The domain cell removes them at teardown.
    """

    def host_leftovers(self, files: DomainFiles) -> tuple[Path, ...]: ...


@dataclass(frozen=True)
class PlaybookRun:
    """One install step as ansible would run it: the playbook, its inventory, its variables."""

    playbook: Path
    inventory: dict[str, Any]
    extravars: dict[str, Any]


@runtime_checkable
class PlansSteps(Protocol):
    """A channel that can say what an install step would run without running it (the dry run)."""

    def plan_step(self, endpoint: GuestEndpoint, step: InstallStep) -> PlaybookRun: ...
