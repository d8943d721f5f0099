"""The Linux family: direct kernel boot with ACPI and an isa pvpanic device, the agent + SSH
channel, and the syzkaller-style console parser.

Every domain boots its own copy of the image's kernel and initrd. libvirt's DAC driver chowns a
domain's kernel and initrd to the QEMU user at start and back at stop, counting users in extended
attributes without a lock: a domain starting while another one on the same image stops is refused
("Setting different DAC user or group ... which is already in use"), measured in CI when two gates
ran one image at once. A private copy (10 MB, milliseconds) is nobody else's to relabel.
"""

import shutil
from pathlib import Path
from typing import Any

from orchestrator.adapters.domain_xml import DomainSpec, mac_for, private_boot_paths, render_domain_xml
from orchestrator.adapters.libvirt_host import GUEST_FILTER, LibvirtHost
from orchestrator.core.plan import CellPlan
from orchestrator.guests.channel import DomainFiles
from orchestrator.guests.linux.channel import LinuxChannel
from orchestrator.guests.linux.console import console_crash_report
from orchestrator.guests.run_context import RunContext
from orchestrator.images.catalog import ImageRecord

TCG_RCU_STALL_TIMEOUT_S = 60
"""RCU stall reports after 60 s instead of the kernel's 21 s, on emulated CPUs only. A host busy with
other guests can leave a TCG vCPU unscheduled for that long: measured in the suite, a good candidate
on kernel N panicked with "rcu_preempt kthread starved for 5271 jiffies" (21 s) while three guests
shared two cores. A stall that lasts a minute is still a titled panic; a KVM guest keeps the default.
"""


def _cmdline(image_cmdline: str, domain_type: str) -> str:
    if domain_type == "kvm" or "rcu_cpu_stall_timeout=" in image_cmdline:
        return image_cmdline
    return f"{image_cmdline} rcupdate.rcu_cpu_stall_timeout={TCG_RCU_STALL_TIMEOUT_S}"


class LinuxFamily:
    """Linux guests on one libvirt host, for one run."""

    name = "linux"
    needs_kvm = False
    runs_activity = True

    def __init__(self, host: LibvirtHost, run: RunContext) -> None:
        self._host = host
        self._run = run

    def domain_xml(self, plan: CellPlan, domain: str, files: DomainFiles, domain_type: str) -> str:
        record = self._run.images[plan.image.name]
        kernel, initrd = self._boot_files(record, files)
        spec = DomainSpec(
            name=domain,
            run_id=self._run.run_id,
            cell_id=plan.cell_id,
            image_name=record.name,
            image_digest=record.digest,
            domain_type="kvm" if domain_type == "kvm" else "qemu",
            memory_mib=plan.resources.memory_mib,
            vcpus=plan.resources.vcpus,
            kernel=kernel,
            initrd=initrd,
            cmdline=_cmdline(record.kernel_cmdline, domain_type),
            disk=files.overlay,
            network=self._run.settings.network_name,
            mac=mac_for(domain),
            console_log=files.console_log,
            network_filter=GUEST_FILTER,
            attempt=plan.attempt,
        )
        return render_domain_xml(spec)

    def _boot_files(self, record: ImageRecord, files: DomainFiles) -> tuple[Path, Path]:
        """The domain's own copies on a local host; a remote host's images are shared as they are
        (this process cannot copy there)."""
        if not self._host.config.is_local:
            return record.kernel_image, record.initrd
        return private_boot_paths(files.overlay)

    def stage_host_files(self, plan: CellPlan, files: DomainFiles) -> None:
        record = self._run.images[plan.image.name]
        sources = (record.kernel_image, record.initrd)
        for source, copy in zip(sources, private_boot_paths(files.overlay), strict=True):
            shutil.copyfile(source, copy)  # no copy2: never inherit another domain's labels (xattrs)
            copy.chmod(0o644)

    def host_leftovers(self, files: DomainFiles) -> tuple[Path, ...]:
        return private_boot_paths(files.overlay)

    def channel(self, plan: CellPlan, domain: str) -> LinuxChannel:
        return LinuxChannel(plan, domain, self._host, self._run)

    def crash_report(self, console_log: Path, domain_log: str) -> dict[str, Any] | None:
        del domain_log  # Linux tells its story on the console
        return console_crash_report(console_log)
