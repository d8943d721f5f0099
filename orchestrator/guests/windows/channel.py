"""The Windows guest channel: readiness, health and installs over WinRM.

Readiness: the guest has an address on the testbed network, WinRM answers with the boot facts,
and the boot mark (BootId, else LastBootUpTime) differs from the boot before the reboot. Health,
after every boot: the sensor service's state, the System events 1001/41/6008 since the run
started (parsed), the Minidump folder listed and the newest dump fetched into the evidence
directory and read. Installs run a playbook through an injected runner with the cell's WinRM
inventory. Every method blocks and is meant for a worker thread; none raises for the guest's
trouble (that is a fact in the report), only for the testbed's.
"""

import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import CanceledError, InfrastructureError
from orchestrator.guests.windows.crash import WindowsCrashReport, windows_crash_report
from orchestrator.guests.windows.events import SystemEvent
from orchestrator.guests.windows.guest_scripts import (
    READINESS_SCRIPT,
    REBOOT_SCRIPT,
    DumpFile,
    GuestOutputError,
    ServiceState,
    health_script,
    parse_boot_facts,
    parse_file_content,
    parse_health_facts,
    read_file_script,
)
from orchestrator.guests.windows.inventory import windows_inventory
from orchestrator.guests.windows.minidump import Minidump, MinidumpError, parse_minidump
from orchestrator.guests.windows.winrm_executor import (
    CommandExecutor,
    CommandResult,
    PyWinRMExecutor,
    WinRMTarget,
    WinRMUnreachableError,
)


class GuestNotReadyError(Exception):
    """The guest is not ready in every respect yet; ask again."""


def _output(result: CommandResult, what: str) -> str:
    """The script's output, or ``GuestOutputError`` when it failed."""
    if not result.ok:
        raise GuestOutputError(f"{what} exited with {result.exit_code}: {result.stderr[:300]}")
    return result.stdout


@dataclass(frozen=True)
class GuestEndpoint:
    """How to reach a ready guest, and which boot it is in."""

    boot_mark: str
    address: str
    last_boot_up_time: str
    os_build: str = ""


@dataclass(frozen=True)
class HealthReport:
    """The facts of one health probe."""

    winrm_ok: bool
    boot_mark: str | None = None
    sensor_service: str | None = None  # the service the candidate declares, if any
    service: ServiceState | None = None  # its state; None when it does not exist
    events: tuple[SystemEvent, ...] = ()
    minidumps: tuple[DumpFile, ...] = ()
    fetched_dump: Path | None = None
    crash: WindowsCrashReport | None = None  # what the guest's own records say crashed since the run began
    detail: str = ""

    @property
    def service_ok(self) -> bool:
        """No service to check, or it runs."""
        return self.sensor_service is None or (self.service is not None and self.service.running)


@dataclass(frozen=True)
class StepOutcome:
    """What a playbook run meant."""

    ok: bool
    blame: str  # "candidate" or "infrastructure" when not ok
    detail: str = ""
    unreachable: bool = False


StepRunner = Callable[[Path, dict[str, Any], dict[str, Any], threading.Event], StepOutcome]
"""Runs a playbook with an inventory and extra vars until done or canceled (ansible-runner)."""


@dataclass(frozen=True)
class WindowsChannelConfig:
    network: ipaddress.IPv4Network  # the testbed network: the guest's address must be in it
    run_started: datetime  # events and dumps older than this belong to the image, not the run
    evidence_dir: Path
    sensor_service: str | None = None
    ready_attempt_interval_s: float = 5.0
    readiness_timeout_s: float = 45.0
    probe_timeout_s: float = 120.0
    max_dump_bytes: int = 16 * 2**20  # small dumps are 256 KiB to a few MiB; MEMORY.DMP stays in the guest


@dataclass
class WindowsChannel:
    """Talks to one Windows guest."""

    config: WindowsChannelConfig
    addresses: Callable[[], Sequence[str]]  # the guest's IPv4 addresses as libvirt sees them
    target_for: Callable[[str], WinRMTarget]  # address -> WinRM connection settings (image credentials)
    executor_for: Callable[[WinRMTarget], CommandExecutor] = PyWinRMExecutor
    step_runner: StepRunner | None = None
    _fetched: set[str] = field(default_factory=set, init=False, repr=False)

    # -- readiness ------------------------------------------------------------------------------

    def _address(self) -> str:
        for address in self.addresses():
            try:
                if ipaddress.ip_address(address) in self.config.network:
                    return address
            except ValueError:
                continue
        raise GuestNotReadyError(f"no address in {self.config.network} yet")

    def ask_ready(self, stale_mark: str | None) -> GuestEndpoint:
        """One readiness attempt: an endpoint, or ``GuestNotReadyError`` to ask again."""
        address = self._address()
        executor = self.executor_for(self.target_for(address))
        try:
            result = executor.run_powershell(READINESS_SCRIPT, timeout_s=self.config.readiness_timeout_s)
        except WinRMUnreachableError as exc:
            raise GuestNotReadyError(str(exc)) from exc
        try:
            facts = parse_boot_facts(_output(result, "the boot-facts query"))
        except GuestOutputError as exc:
            raise GuestNotReadyError(str(exc)) from exc
        if facts.boot_mark == stale_mark:
            raise GuestNotReadyError(f"the guest still runs the boot before the reboot ({facts.boot_mark})")
        return GuestEndpoint(facts.boot_mark, address, facts.last_boot_up_time, facts.build)

    def wait_ready(self, stale_mark: str | None, stop: threading.Event) -> GuestEndpoint:
        """Ask until the guest is ready; ``CanceledError`` once ``stop`` is set."""
        while True:
            try:
                return self.ask_ready(stale_mark)
            except GuestNotReadyError as exc:
                last = exc
            if stop.wait(self.config.ready_attempt_interval_s):
                raise CanceledError(f"stopped waiting for the guest: {last}")

    # -- health ---------------------------------------------------------------------------------

    def probe_health(self, endpoint: GuestEndpoint) -> HealthReport:
        executor = self.executor_for(self.target_for(endpoint.address))
        service = self.config.sensor_service
        try:
            boot = executor.run_powershell(READINESS_SCRIPT, timeout_s=self.config.readiness_timeout_s)
            probe = executor.run_powershell(
                health_script(service, self.config.run_started), timeout_s=self.config.probe_timeout_s
            )
        except WinRMUnreachableError as exc:
            return HealthReport(winrm_ok=False, sensor_service=service, detail=str(exc))
        try:
            mark = parse_boot_facts(_output(boot, "the boot-facts query")).boot_mark
            facts = parse_health_facts(_output(probe, "the health query"))
        except GuestOutputError as exc:
            return HealthReport(winrm_ok=True, sensor_service=service, detail=str(exc))
        fetched, dump, note = self._fetch_newest_dump(executor, facts.minidumps)
        return HealthReport(
            winrm_ok=True,
            boot_mark=mark,
            sensor_service=service,
            service=facts.service,
            events=facts.events,
            minidumps=facts.minidumps,
            fetched_dump=fetched,
            crash=windows_crash_report(None, "", facts.events, dump=dump),
            detail=note,
        )

    def _fetch_newest_dump(
        self, executor: CommandExecutor, dumps: Sequence[DumpFile]
    ) -> tuple[Path | None, Minidump | None, str]:
        if not dumps:
            return None, None, ""
        newest = dumps[-1]
        local = self.config.evidence_dir / f"minidump-{newest.name}"
        if newest.size > self.config.max_dump_bytes:
            return None, None, f"{newest.path} is {newest.size} bytes: left in the guest"
        if newest.name not in self._fetched:
            script = read_file_script(newest.path, self.config.max_dump_bytes)
            try:
                result = executor.run_powershell(script, timeout_s=self.config.probe_timeout_s)
                content = parse_file_content(_output(result, f"reading {newest.path}"))
            except (WinRMUnreachableError, GuestOutputError) as exc:
                return None, None, f"fetching {newest.path} failed: {exc}"
            self.config.evidence_dir.mkdir(parents=True, exist_ok=True)
            local.write_bytes(content)
            self._fetched.add(newest.name)
        try:
            return local, parse_minidump(local.read_bytes()), ""
        except MinidumpError as exc:
            return local, None, f"{newest.name}: {exc}"

    # -- installs and reboots -------------------------------------------------------------------

    def inventory(self, endpoint: GuestEndpoint) -> dict[str, Any]:
        return windows_inventory(self.target_for(endpoint.address))

    def run_step(
        self,
        endpoint: GuestEndpoint,
        playbook: Path,
        extravars: dict[str, Any],
        cancel: threading.Event,
    ) -> StepOutcome:
        if self.step_runner is None:
            raise InfrastructureError("the Windows channel was made without a playbook runner")
        return self.step_runner(playbook, self.inventory(endpoint), extravars, cancel)

    def reboot(self, endpoint: GuestEndpoint) -> None:
        """Ask Windows for a clean reboot; it starts five seconds after the command returns."""
        executor = self.executor_for(self.target_for(endpoint.address))
        try:
            result = executor.run_powershell(REBOOT_SCRIPT, timeout_s=self.config.readiness_timeout_s)
        except WinRMUnreachableError as exc:
            raise InfrastructureError(f"could not ask {endpoint.address} to reboot: {exc}") from exc
        if not result.ok:
            raise InfrastructureError(f"shutdown /r in {endpoint.address} exited with {result.exit_code}")
