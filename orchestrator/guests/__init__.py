"""Guest OS families as plug-ins: each knows its domain XML, its channel and its crash parser.

A family, made for one host and one run, gives the generic ``DomainCell`` what differs between
operating systems: Linux (direct kernel boot, pvpanic, agent + SSH) and Windows (UEFI, Hyper-V
crash MSRs, WinRM; KVM hosts only).
"""

from collections.abc import Callable

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.guests.channel import GuestChannel, GuestEndpoint, GuestFamily, NotReadyError
from orchestrator.guests.domain_cell import DomainCell
from orchestrator.guests.linux import LinuxFamily
from orchestrator.guests.run_context import RunContext
from orchestrator.guests.windows.family import WindowsFamily

FamilyFactory = Callable[[LibvirtHost, RunContext], GuestFamily]

FAMILIES: dict[str, FamilyFactory] = {
    "linux": LinuxFamily,
    "windows": WindowsFamily,
}

#: The families whose guests run the activity workload (a POSIX sh script).
ACTIVITY_FAMILIES = frozenset(
    name for name, family in FAMILIES.items() if getattr(family, "runs_activity", False)
)

__all__ = [
    "ACTIVITY_FAMILIES",
    "FAMILIES",
    "DomainCell",
    "FamilyFactory",
    "GuestChannel",
    "GuestEndpoint",
    "GuestFamily",
    "LinuxFamily",
    "NotReadyError",
    "RunContext",
    "WindowsFamily",
]
