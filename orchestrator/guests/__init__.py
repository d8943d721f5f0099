"""Guest OS families as plug-ins: each knows its domain XML, its channel and its crash parser.

A family turns a cell plan into the ``CellPorts`` that carry out the cell machine's commands.
Linux is implemented; Windows (Hyper-V crash MSRs, WinRM) plugs in here on KVM hosts.
"""

from collections.abc import Callable

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.core.plan import CellPlan
from orchestrator.engine.cell_driver import CellPorts, Post
from orchestrator.guests.linux_cell import LinuxLibvirtCell
from orchestrator.guests.run_context import RunContext

CellFactory = Callable[[CellPlan, Post, LibvirtHost, RunContext, str], CellPorts]

FAMILIES: dict[str, CellFactory] = {
    "linux": LinuxLibvirtCell,
}

__all__ = ["FAMILIES", "CellFactory", "LinuxLibvirtCell", "RunContext"]
