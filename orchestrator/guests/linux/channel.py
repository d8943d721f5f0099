"""The Linux guest channel: the QEMU guest agent for readiness and facts, SSH/ansible for the rest.

Readiness: the agent answers with a boot id different from the previous boot's, the guest has an
address on the testbed network, its SSH host key is read through the agent and pinned, and sshd
greets. Probes read facts through the agent (it works when the candidate cut the network), then
check that SSH still works and run the candidate's health check over it. Installs run ansible.
"""

import hashlib
import ipaddress
import socket
import threading
from pathlib import Path
from typing import Any

from orchestrator.adapters.ansible_playbook import run_playbook
from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.adapters.ssh import SshTarget, run_ssh
from orchestrator.core.cell_events import StepFinished
from orchestrator.core.plan import CellPlan, InstallStep, StepKind
from orchestrator.core.probe_rules import ConsoleFinding, ProbeReport
from orchestrator.core.sanitize import one_line
from orchestrator.errors import InfrastructureError
from orchestrator.guests.channel import GuestEndpoint, NotReadyError
from orchestrator.guests.linux.console import console_findings
from orchestrator.guests.linux.probe_script import (
    BOOT_ID_PATH,
    health_command_line,
    parse_facts,
    parse_health,
    probe_script,
)
from orchestrator.guests.linux.staging import STAGE_DIR, staging_script
from orchestrator.guests.run_context import RunContext

HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key.pub"
FACTS_TIMEOUT_S = 20.0
SSH_CHECK_S = 30.0  # reaching sshd and running `true`


def read_banner(address: str, port: int = 22, timeout: float = 3.0) -> str:
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.settimeout(timeout)
        banner = connection.recv(256).decode(errors="replace")
    if not banner.startswith("SSH-"):
        raise NotReadyError(f"port {port} answered {banner[:40]!r}, not an SSH banner")
    return banner.strip()


class LinuxChannel:
    """Talks to one Linux guest through its agent (via libvirt) and over SSH."""

    def __init__(self, plan: CellPlan, domain: str, host: LibvirtHost, run: RunContext) -> None:
        self.plan = plan
        self._domain = domain
        self._host = host
        self._run = run
        self._network = ipaddress.ip_network(run.settings.network_cidr)
        self._work_dir = run.cell_work_dir(plan.cell_id, plan.attempt)
        self._console_log = run.cell_dir(plan.cell_id, plan.attempt) / "console.log"

    # -- readiness --------------------------------------------------------------------------

    def ask_ready(self, stale_mark: str | None) -> GuestEndpoint:
        self._host.agent_command(self._domain, "guest-ping", timeout=3)
        mark = self._read(["cat", BOOT_ID_PATH]).strip()
        if not mark:
            raise NotReadyError("the guest reported an empty boot id")
        if mark == stale_mark:
            raise NotReadyError("the guest still runs the boot from before the reboot")
        addresses = [
            address
            for address in self._host.guest_ipv4_addresses(self._domain)
            if ipaddress.ip_address(address) in self._network
        ]
        if not addresses:
            raise NotReadyError(f"no address in {self._network} yet")
        self._host.set_authorized_keys(self._domain, "root", [self._run.ssh_public_key])
        known_hosts = self._pin_host_key(addresses[0])
        read_banner(addresses[0])
        return GuestEndpoint(boot_mark=mark, address=addresses[0], known_hosts=known_hosts)

    def _read(self, argv: list[str]) -> str:
        result = self._host.agent_exec(
            self._domain, argv[0] if argv[0].startswith("/") else f"/bin/{argv[0]}", argv[1:]
        )
        if result.exit_code != 0:
            raise NotReadyError(f"{' '.join(argv)} exited with {result.exit_code}: {one_line(result.stderr)}")
        return result.stdout

    def _pin_host_key(self, address: str) -> Path:
        """The guest's host key as its agent (the hypervisor's channel) reports it: SSH must match."""
        key = self._read(["cat", HOST_KEY_PATH]).split()
        if len(key) < 2 or not key[0].startswith("ssh-"):
            raise NotReadyError(f"{HOST_KEY_PATH} holds no usable key yet")
        self._work_dir.mkdir(parents=True, exist_ok=True)
        known_hosts = self._work_dir / "known_hosts"
        known_hosts.write_text(f"{address} {key[0]} {key[1]}\n")
        return known_hosts

    def _target(self, endpoint: GuestEndpoint) -> SshTarget:
        return SshTarget(endpoint.address, "root", self._run.ssh_private_key, endpoint.known_hosts)

    # -- probes -----------------------------------------------------------------------------

    def probe(self, endpoint: GuestEndpoint | None, *, health_check: bool) -> ProbeReport:
        findings = self._findings()
        try:
            result = self._host.agent_exec(
                self._domain, "/bin/sh", ["-c", probe_script()], timeout_s=FACTS_TIMEOUT_S
            )
        except InfrastructureError as exc:
            return ProbeReport(agent_ok=False, findings=findings, detail=str(exc))
        facts = parse_facts(result.stdout)
        report: dict[str, Any] = {
            "agent_ok": True,
            "boot_mark": facts.boot_id,
            "sysctls": dict(facts.sysctls),
            "tainted": facts.tainted,
            "findings": findings,
        }
        if endpoint is None:
            return ProbeReport(**report, ssh_detail="no address: the guest never became ready")
        command = self._health_command() if health_check else None
        return self._probe_over_ssh(self._target(endpoint), report, command)

    def _probe_over_ssh(self, target: SshTarget, report: dict[str, Any], command: str | None) -> ProbeReport:
        """One connection per probe (an SSH handshake costs seconds of an emulated CPU): reaching
        the guest's sshd at all is the SSH check, and the candidate's health check runs in it."""
        limit = max(10.0, self.plan.timeouts.probe_s / 2)
        if command is None:
            line, bound = "true", SSH_CHECK_S
        else:  # the check's own limit, and the handshake's time on top
            line, bound = health_command_line(command, limit), limit + 15
        try:
            answered = run_ssh(target, line, timeout_s=bound)
        except InfrastructureError as exc:
            return self._ssh_lost(report, str(exc))
        if command is None:
            return ProbeReport(**report, ssh_ok=True)
        health_rc, output = parse_health(answered.output)
        if health_rc is None:
            return self._ssh_lost(report, f"the health check's connection ended early: {one_line(output)}")
        return ProbeReport(**report, ssh_ok=True, health_rc=health_rc, health_output=one_line(output, 1000))

    def _ssh_lost(self, report: dict[str, Any], detail: str) -> ProbeReport:
        """SSH failed: a cut network only if the agent still answers now — the guest may have
        frozen between the agent's answer and the SSH attempt (then it is silent, not cut off)."""
        try:
            self._host.agent_command(self._domain, "guest-ping", timeout=10)
        except InfrastructureError as exc:
            return ProbeReport(agent_ok=False, findings=report["findings"], detail=f"{detail}; then {exc}")
        return ProbeReport(**report, ssh_detail=detail)

    def _findings(self) -> tuple[ConsoleFinding, ...]:
        return console_findings(self._console_log) if self._console_log.exists() else ()

    def _health_command(self) -> str | None:
        if self.plan.control_of is not None:
            return None  # a control twin has no candidate to ask
        package = self._run.candidate.sensor_package(self.plan.image.os_family, self.plan.sensor_version)
        return package.health_check if package is not None else None

    # -- install steps ----------------------------------------------------------------------

    def run_step(self, endpoint: GuestEndpoint, step: InstallStep, cancel: threading.Event) -> StepFinished:
        match step.kind:
            case StepKind.CANDIDATE:
                playbook, extravars = "install_candidate.yml", self._candidate_vars()
            case StepKind.PRODUCT:
                playbook, extravars = "install_candidate.yml", self._product_vars(step.name)
            case _:
                playbook, extravars = "run_activity.yml", self._activity_vars()
        result = run_playbook(
            playbook=self._run.playbooks_dir / "linux" / playbook,
            private_data_dir=self._work_dir / "ansible" / f"{step.kind}-{step.name}",
            target=self._target(endpoint),
            extravars=extravars,
            events_log=self._console_log.parent / "ansible-events.jsonl",
            timeout_s=self.plan.timeouts.install_s,
            cancel=cancel,
        )
        return StepFinished(
            step,
            ok=result.ok,
            blame=result.blame,
            detail=one_line(result.detail, 2000),
            unreachable=result.unreachable,
        )

    def _candidate_vars(self) -> dict[str, Any]:
        """The sensor package of the cell's sensor release, and each content file as the cell's
        variant has it (generated again here, and checked against the digest the plan pinned)."""
        candidate = self._run.candidate
        family = self.plan.image.os_family
        package = candidate.sensor_package(family, self.plan.sensor_version)
        if package is None:
            raise InfrastructureError(
                f"the candidate has no {family} sensor package {self.plan.sensor_version}"
            )
        pinned = dict(self.plan.content_digests)
        files: list[tuple[str, str, str, Path]] = [
            (package.name, Path(package.path).name, package.sha256, candidate.path_of(package))
        ]
        variants_dir = self._work_dir / "content"
        variants_dir.mkdir(parents=True, exist_ok=True)
        for content in candidate.content_files():
            data = candidate.content_bytes(content, self.plan.content_variant, self._run.variant_seed)
            digest = hashlib.sha256(data).hexdigest()
            if pinned and pinned.get(content.name) != digest:
                raise InfrastructureError(
                    f"{content.name}: the {self.plan.content_variant} variant is not what was planned"
                )
            staged = variants_dir / Path(content.path).name
            staged.write_bytes(data)
            files.append((content.name, staged.name, digest, staged))
        installer_args: list[str] = []
        for _, file_name, _, _ in files[1:]:
            installer_args += ["--content", f"{STAGE_DIR}/{file_name}"]
        return self._install_vars(STAGE_DIR, files, Path(package.path).name, installer_args)

    def _product_vars(self, name: str) -> dict[str, Any]:
        product = self._run.products.get(name)
        if product is None:
            raise InfrastructureError(f"co-installed product {name!r} is not registered on this testbed")
        manifest = product.manifest
        stage = f"/var/tmp/testbed-product-{name}"  # noqa: S108 - a path inside the guest, owned by root
        file_name = Path(manifest.package).name
        files = [(name, file_name, manifest.sha256, product.package_path)]
        return self._install_vars(stage, files, file_name, list(manifest.install_args))

    def _install_vars(
        self, stage: str, files: list[tuple[str, str, str, Path]], package: str, installer_args: list[str]
    ) -> dict[str, Any]:
        """Variables of install_candidate.yml: the same contract serves candidates and products."""
        bundle = self._work_dir / f"stage-{Path(stage).name}.sh"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_text(staging_script(stage, [(file_name, path) for _, file_name, _, path in files]))
        return {
            "testbed_stage_dir": stage,
            "testbed_bundle": str(bundle),
            "testbed_artifacts": [
                {"name": name, "file": file_name, "sha256": digest} for name, file_name, digest, _ in files
            ],
            "testbed_sensor_package": package,
            "testbed_installer_args": installer_args,
        }

    def _activity_vars(self) -> dict[str, Any]:
        if self._run.activity_script is None:
            raise InfrastructureError("the matrix asks for an activity step but gives no workload")
        return {"testbed_activity_script": str(self._run.activity_script)}

    # -- reboots ----------------------------------------------------------------------------

    def reboot(self) -> None:
        self._host.reboot_guest(self._domain)
