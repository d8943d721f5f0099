"""The Windows channel as the generic domain cell asks for it (``guests.channel.GuestChannel``).

``WindowsChannel`` speaks WinRM; this adapter turns its answers into the engine's terms:

- readiness: WinRM answers with a boot mark other than the stale one;
- a probe (``ProbeReport``): ``agent_ok`` when WinRM or the QEMU guest agent answers (the agent still
  does when the candidate cut the network), ``boot_mark`` from WinRM, else read through the agent,
  ``ssh_ok`` when WinRM answered every question, ``health_rc`` from the sensor service's state,
  ``findings`` from the bugcheck events (1001, 41) since the cell started. Windows has no panic
  sysctls: its crash settings are baked into the image, so nothing is required of them;
- installs: the family's playbooks in ``playbooks/windows/`` with the cell's WinRM inventory.

Every probe's System events go into the cell's evidence (``system-events.json``), where the
family's crash parser reads them again.
"""

import hashlib
import ipaddress
import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.core.cell_events import StepFinished
from orchestrator.core.outcomes import Blame
from orchestrator.core.plan import CellPlan, InstallStep, StepKind
from orchestrator.core.probe_rules import ConsoleFinding, ProbeReport
from orchestrator.core.sanitize import one_line
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.guests.channel import GuestEndpoint, NotReadyError, PlaybookRun
from orchestrator.guests.run_context import RunContext
from orchestrator.guests.windows.bugchecks import bugcheck_title
from orchestrator.guests.windows.channel import (
    GuestEndpoint as WindowsEndpoint,
)
from orchestrator.guests.windows.channel import (
    GuestNotReadyError,
    HealthReport,
    StepRunner,
    WindowsChannel,
    WindowsChannelConfig,
)
from orchestrator.guests.windows.events import SystemEvent, bugcheck_from_event
from orchestrator.guests.windows.guest_scripts import READINESS_SCRIPT, GuestOutputError, parse_boot_facts
from orchestrator.guests.windows.playbook_vars import (
    INSTALLED_RETURN_CODES,
    STAGE_DIR,
    StagedArtifact,
    candidate_install_vars,
    staged_path,
)
from orchestrator.guests.windows.winrm_executor import (
    CommandExecutor,
    PyWinRMExecutor,
    WinRMTarget,
    encode_powershell,
)

WINDOWS_POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
SYSTEM_EVENTS_FILE = "system-events.json"
AGENT_TIMEOUT_S = 30.0


def bugcheck_findings(
    events: tuple[SystemEvent, ...], module: str | None = None
) -> tuple[ConsoleFinding, ...]:
    """One fatal finding per stop code the System log records since the cell started.

    The title carries no driver name, so it stays the same from probe to probe (the machine tells
    new findings from known ones by title) even once a dump names the driver.
    """
    titles = dict.fromkeys(
        bugcheck_title(found.code) for event in events if (found := bugcheck_from_event(event)) is not None
    )
    return tuple(ConsoleFinding(title=title, fatal=True, module=module) for title in titles)


def installer_arguments(package: StagedArtifact, content: list[StagedArtifact]) -> list[str]:
    """How a Windows sensor package learns where its content files are staged: an .msi gets the
    property TESTBED_CONTENT (paths joined by ';'), an .exe ``--content PATH`` per file, as the
    Linux installer contract has it."""
    paths = [staged_path(artifact) for artifact in content]
    if not paths:
        return []
    if package.source.suffix.lower() == ".msi":
        return [f"TESTBED_CONTENT={';'.join(paths)}"]
    return [part for path in paths for part in ("--content", path)]


class WindowsGuestChannel:
    """``GuestChannel`` for one Windows guest."""

    def __init__(
        self,
        plan: CellPlan,
        domain: str,
        host: LibvirtHost,
        run: RunContext,
        *,
        credentials: tuple[str, str],
        started: datetime,
        sensor_service: str | None,
        step_runner: StepRunner | None = None,
        executor_for: Callable[[WinRMTarget], CommandExecutor] = PyWinRMExecutor,
    ) -> None:
        self.plan = plan
        self._domain = domain
        self._host = host
        self._run = run
        self._username, self._password = credentials
        self._evidence_dir = run.cell_dir(plan.cell_id, plan.attempt)
        self._work_dir = run.cell_work_dir(plan.cell_id, plan.attempt)
        self.inner = WindowsChannel(
            config=WindowsChannelConfig(
                network=ipaddress.IPv4Network(run.settings.network_cidr),
                run_started=started,
                evidence_dir=self._evidence_dir,
                sensor_service=sensor_service,
            ),
            addresses=lambda: host.guest_ipv4_addresses(domain),
            target_for=self.target_for,
            executor_for=executor_for,
            step_runner=step_runner,
        )
        self._last: WindowsEndpoint | None = None

    def target_for(self, address: str) -> WinRMTarget:
        return WinRMTarget(address=address, username=self._username, password=self._password)

    # -- readiness ------------------------------------------------------------------------------

    def ask_ready(self, stale_mark: str | None) -> GuestEndpoint:
        try:
            endpoint = self.inner.ask_ready(stale_mark)
        except GuestNotReadyError as exc:
            raise NotReadyError(str(exc)) from exc
        self._last = endpoint
        return GuestEndpoint(boot_mark=endpoint.boot_mark, address=endpoint.address)

    def _windows_endpoint(self, endpoint: GuestEndpoint) -> WindowsEndpoint:
        last = self._last
        if last is not None and last.address == endpoint.address and last.boot_mark == endpoint.boot_mark:
            return last
        return WindowsEndpoint(endpoint.boot_mark, endpoint.address, last_boot_up_time="")

    # -- probes ---------------------------------------------------------------------------------

    def probe(self, endpoint: GuestEndpoint | None, *, health_check: bool) -> ProbeReport:
        agent_ok = self._agent_answers()
        if endpoint is None:
            return ProbeReport(
                agent_ok=agent_ok,
                boot_mark=self._agent_boot_mark() if agent_ok else None,
                ssh_detail="no address: the guest never became ready",
                required_sysctls={},  # none: Windows' crash settings are the image's
            )
        health = self.inner.probe_health(self._windows_endpoint(endpoint))
        self._record_events(health)
        complete = health.winrm_ok and health.boot_mark is not None
        mark = health.boot_mark if complete else (self._agent_boot_mark() if agent_ok else None)
        module = health.crash.module if health.crash is not None else None
        report = ProbeReport(
            agent_ok=agent_ok or complete,
            boot_mark=mark,
            ssh_ok=complete,
            ssh_detail="" if complete else f"WinRM: {health.detail or 'no answer'}",
            findings=bugcheck_findings(health.events, module),
            detail=health.detail,
            required_sysctls={},  # none: Windows' crash settings are the image's
        )
        if not complete or not health_check or health.sensor_service is None:
            return report
        return replace(report, health_rc=0 if health.service_ok else 1, health_output=_service_text(health))

    def _agent_answers(self) -> bool:
        try:
            self._host.agent_command(self._domain, "guest-ping", timeout=3)
        except InfrastructureError:
            return False
        return True

    def _agent_boot_mark(self) -> str | None:
        """The boot mark through the QEMU guest agent: the same script, without the network."""
        arguments = ["-NoProfile", "-NonInteractive", "-EncodedCommand", encode_powershell(READINESS_SCRIPT)]
        try:
            result = self._host.agent_exec(
                self._domain, WINDOWS_POWERSHELL, arguments, timeout_s=AGENT_TIMEOUT_S
            )
            return parse_boot_facts(result.stdout).boot_mark if result.exit_code == 0 else None
        except (InfrastructureError, GuestOutputError):
            return None

    def _record_events(self, health: HealthReport) -> None:
        if not health.winrm_ok or health.boot_mark is None:
            return  # nothing was read: keep what the last probe found
        self._evidence_dir.mkdir(parents=True, exist_ok=True)
        events = [event.as_dict() for event in health.events]
        (self._evidence_dir / SYSTEM_EVENTS_FILE).write_text(json.dumps(events, indent=2) + "\n")

    # -- install steps --------------------------------------------------------------------------

    def plan_step(self, endpoint: GuestEndpoint, step: InstallStep) -> PlaybookRun:
        """What a step runs: the playbook, the cell's WinRM inventory, the playbook's variables
        (staging the content variant's bytes in the work directory, checked against the plan)."""
        playbooks = self._run.playbooks_dir / "windows"
        inventory = self.inner.inventory(self._windows_endpoint(endpoint))
        match step.kind:
            case StepKind.CANDIDATE:
                return PlaybookRun(playbooks / "install_candidate.yml", inventory, self._candidate_vars())
            case StepKind.PRODUCT:
                return PlaybookRun(
                    playbooks / "install_product.yml", inventory, self._product_vars(step.name)
                )
        raise ConfigurationError(
            f"cell {self.plan.cell_id}: the activity workload is a shell script; Windows cells cannot run it"
        )

    def _candidate_vars(self) -> dict[str, object]:
        candidate = self._run.candidate
        package = candidate.sensor_package("windows", self.plan.sensor_version)
        if package is None:
            raise InfrastructureError(
                f"the candidate has no windows sensor package {self.plan.sensor_version}"
            )
        sensor = StagedArtifact(package.name, str(package.kind), candidate.path_of(package), package.sha256)
        pinned = dict(self.plan.content_digests)
        content = []
        variants_dir = self._work_dir / "content"
        variants_dir.mkdir(parents=True, exist_ok=True)
        for artifact in candidate.content_files():
            data = candidate.content_bytes(artifact, self.plan.content_variant, self._run.variant_seed)
            digest = hashlib.sha256(data).hexdigest()
            if pinned and pinned.get(artifact.name) != digest:
                raise InfrastructureError(
                    f"{artifact.name}: the {self.plan.content_variant} variant is not what was planned"
                )
            staged = variants_dir / Path(artifact.path).name
            staged.write_bytes(data)
            content.append(StagedArtifact(artifact.name, str(artifact.kind), staged, digest))
        return candidate_install_vars([sensor, *content], sensor, installer_arguments(sensor, content))

    def _product_vars(self, name: str) -> dict[str, object]:
        product = self._run.products.get(name)
        if product is None:
            raise InfrastructureError(f"co-installed product {name!r} is not registered on this testbed")
        manifest = product.manifest
        return {
            "testbed_stage_dir": str(STAGE_DIR),
            "testbed_product": {
                "name": name,
                "file": product.package_path.name,
                "sha256": manifest.sha256,
                "src": str(product.package_path),
                "arguments": list(manifest.install_args),
                "product_id": "",
                "expected_return_codes": list(INSTALLED_RETURN_CODES),
            },
        }

    def run_step(self, endpoint: GuestEndpoint, step: InstallStep, cancel: threading.Event) -> StepFinished:
        planned = self.plan_step(endpoint, step)
        outcome = self.inner.run_step(
            self._windows_endpoint(endpoint), planned.playbook, dict(planned.extravars), cancel
        )
        return StepFinished(
            step,
            ok=outcome.ok,
            blame=Blame(outcome.blame) if not outcome.ok else Blame.CANDIDATE,
            detail=one_line(outcome.detail, 2000),
            unreachable=outcome.unreachable,
        )

    # -- reboots --------------------------------------------------------------------------------

    def reboot(self) -> None:
        """A clean reboot asked over WinRM; through the guest agent when WinRM was never reached."""
        if self._last is not None:
            self.inner.reboot(self._last)
        else:
            self._host.reboot_guest(self._domain)


def _service_text(health: HealthReport) -> str:
    if health.service is None:
        return f"service {health.sensor_service} does not exist"
    service = health.service
    return f"service {service.name} is {service.status} (start type {service.start_type})"
