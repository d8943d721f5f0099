"""The Windows family: UEFI (Secure Boot where the image has it) with a per-domain variable store, a
TPM, the Hyper-V crash MSRs, the WinRM channel, and the bugcheck parser. KVM hosts only.

A crash report is read from what the cell's evidence directory holds when the cell ends: QEMU's
``GUEST_PANICKED`` details (``panic.json``, written by the domain cell as the event arrives),
libvirt's ``panic hyper-v:`` line in the domain log, the System events the probes read
(``system-events.json``) and the newest minidump fetched (``minidump-*.dmp``).
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.adapters.domain_xml import (
    OVMF,
    OVMF_SECURE_BOOT,
    WindowsDomainSpec,
    mac_for,
    nvram_path,
    render_domain_xml,
)
from orchestrator.adapters.libvirt_host import GUEST_FILTER, LibvirtHost
from orchestrator.core.plan import CellPlan
from orchestrator.guests.channel import DomainFiles
from orchestrator.guests.domain_cell import PANIC_FILE
from orchestrator.guests.run_context import RunContext
from orchestrator.guests.windows.channel import StepRunner
from orchestrator.guests.windows.crash import windows_crash_report
from orchestrator.guests.windows.events import SystemEvent
from orchestrator.guests.windows.guest_channel import SYSTEM_EVENTS_FILE, WindowsGuestChannel
from orchestrator.guests.windows.minidump import Minidump, MinidumpError, parse_minidump
from orchestrator.guests.windows.playbook_runner import ansible_step_runner
from orchestrator.images.catalog import ImageRecord
from orchestrator.images.definition import WindowsImage

CLOCK_SLACK = timedelta(minutes=5)
"""Events are read from a little before the cell started: the guest's clock (its RTC, from the
host's) may lag the host's by a moment, and a crash in the first boot must not be missed."""


def image_credentials(record: ImageRecord) -> tuple[str, str]:
    """The account WinRM logs in with: the record's, else the definition's defaults."""
    username = record.guest_username or str(WindowsImage.model_fields["username"].default)
    password = record.guest_password or str(WindowsImage.model_fields["password"].default)
    return username, password


def windows_domain_spec(
    plan: CellPlan, domain: str, files: DomainFiles, domain_type: str, run: RunContext
) -> WindowsDomainSpec:
    record = run.images[plan.image.name]
    return WindowsDomainSpec(
        name=domain,
        run_id=run.run_id,
        cell_id=plan.cell_id,
        image_name=record.name,
        image_digest=record.digest,
        domain_type="kvm" if domain_type == "kvm" else "qemu",
        memory_mib=plan.resources.memory_mib,
        vcpus=plan.resources.vcpus,
        disk=files.overlay,
        nvram=nvram_path(files.overlay),
        network=run.settings.network_name,
        mac=mac_for(domain),
        console_log=files.console_log,
        firmware=OVMF_SECURE_BOOT if record.secure_boot else OVMF,
        nvram_template=record.nvram_template,
        network_filter=GUEST_FILTER,
        attempt=plan.attempt,
    )


def sensor_service(plan: CellPlan, run: RunContext) -> str | None:
    """The service a Windows sensor package names as its health check (None for control twins and
    packages without one)."""
    if plan.control_of is not None:
        return None  # a control twin has no candidate to ask
    package = run.candidate.sensor_package("windows", plan.sensor_version)
    if package is None:
        return None
    return package.health_check  # a service name: the candidate is refused when loaded otherwise


class WindowsFamily:
    """Windows guests on one libvirt host, for one run."""

    name = "windows"
    needs_kvm = True  # QEMU refuses the Hyper-V crash MSRs under TCG, and Windows would crawl
    runs_activity = False  # the workload is a POSIX sh script: refused when the plan is made

    def __init__(self, host: LibvirtHost, run: RunContext, step_runner: StepRunner | None = None) -> None:
        self._host = host
        self._run = run
        self._step_runner = step_runner
        self._started = datetime.now(UTC) - CLOCK_SLACK

    def domain_xml(self, plan: CellPlan, domain: str, files: DomainFiles, domain_type: str) -> str:
        return render_domain_xml(windows_domain_spec(plan, domain, files, domain_type, self._run))

    def channel(self, plan: CellPlan, domain: str) -> WindowsGuestChannel:
        runner = self._step_runner or ansible_step_runner(
            work_dir=self._run.cell_work_dir(plan.cell_id, plan.attempt),
            events_log=self._run.cell_dir(plan.cell_id, plan.attempt) / "ansible-events.jsonl",
            timeout_s=plan.timeouts.install_s,
        )
        return WindowsGuestChannel(
            plan,
            domain,
            self._host,
            self._run,
            credentials=image_credentials(self._run.images[plan.image.name]),
            started=self._started,
            sensor_service=sensor_service(plan, self._run),
            step_runner=runner,
        )

    def crash_report(self, console_log: Path, domain_log: str) -> dict[str, Any] | None:
        evidence = console_log.parent
        report = windows_crash_report(
            last_panic(evidence / PANIC_FILE),
            domain_log,
            recorded_events(evidence / SYSTEM_EVENTS_FILE),
            dump=newest_dump(evidence),
        )
        return None if report is None else dict(report.as_dict())

    def host_leftovers(self, files: DomainFiles) -> tuple[Path, ...]:
        """libvirt copies the variable store for a transient domain and keeps the copy when the
        domain goes away (measured on libvirt 9.0); the TPM's state it removes itself, as it does
        for every transient domain without ``persistent_state``."""
        return (nvram_path(files.overlay),)


def last_panic(path: Path) -> Mapping[str, object] | None:
    """The newest GUEST_PANICKED data that carries crash details, else the newest at all."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    payloads: list[Mapping[str, object]] = [
        entry["data"] for entry in recorded if isinstance(entry, dict) and isinstance(entry.get("data"), dict)
    ]
    detailed = [data for data in payloads if isinstance(data.get("info"), dict)]
    chosen = detailed or payloads
    return chosen[-1] if chosen else None


def recorded_events(path: Path) -> tuple[SystemEvent, ...]:
    try:
        recorded = json.loads(path.read_text())
        return tuple(SystemEvent.from_dict(entry) for entry in recorded if isinstance(entry, dict))
    except (OSError, ValueError, KeyError):
        return ()


def newest_dump(evidence: Path) -> Minidump | None:
    dumps = sorted(evidence.glob("minidump-*"), key=lambda path: path.stat().st_mtime)
    for path in reversed(dumps):
        try:
            return parse_minidump(path.read_bytes())
        except (OSError, MinidumpError):
            continue
    return None
