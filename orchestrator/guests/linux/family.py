"""The Linux family: direct kernel boot with ACPI and an isa pvpanic device, the agent + SSH
channel, and the syzkaller-style console parser."""

from pathlib import Path
from typing import Any

from orchestrator.adapters.domain_xml import DomainSpec, mac_for, render_domain_xml
from orchestrator.adapters.libvirt_host import GUEST_FILTER, LibvirtHost
from orchestrator.core.plan import CellPlan
from orchestrator.guests.channel import DomainFiles
from orchestrator.guests.linux.channel import LinuxChannel
from orchestrator.guests.linux.console import console_crash_report
from orchestrator.guests.run_context import RunContext


class LinuxFamily:
    """Linux guests on one libvirt host, for one run."""

    name = "linux"
    needs_kvm = False

    def __init__(self, host: LibvirtHost, run: RunContext) -> None:
        self._host = host
        self._run = run

    def domain_xml(self, plan: CellPlan, domain: str, files: DomainFiles, domain_type: str) -> str:
        record = self._run.images[plan.image.name]
        spec = DomainSpec(
            name=domain,
            run_id=self._run.run_id,
            cell_id=plan.cell_id,
            image_name=record.name,
            image_digest=record.digest,
            domain_type="kvm" if domain_type == "kvm" else "qemu",
            memory_mib=plan.resources.memory_mib,
            vcpus=plan.resources.vcpus,
            kernel=record.kernel_image,
            initrd=record.initrd,
            cmdline=record.kernel_cmdline,
            disk=files.overlay,
            network=self._run.settings.network_name,
            mac=mac_for(domain),
            console_log=files.console_log,
            network_filter=GUEST_FILTER,
            attempt=plan.attempt,
        )
        return render_domain_xml(spec)

    def channel(self, plan: CellPlan, domain: str) -> LinuxChannel:
        return LinuxChannel(plan, domain, self._host, self._run)

    def crash_report(self, console_log: Path, domain_log: str) -> dict[str, Any] | None:
        del domain_log  # Linux tells its story on the console
        return console_crash_report(console_log)
