"""A Linux cell on a libvirt host: what the cell machine's commands mean for a Linux guest.

Channel: the QEMU guest agent for readiness (boot id, address, SSH key) and SSH/ansible for
installs. Crash detection: libvirt lifecycle events (pvpanic), never polling. Crash details:
the serial console, parsed syzkaller-style.
"""

import base64
import io
import ipaddress
import json
import shlex
import tarfile
import threading
from pathlib import Path
from typing import Any

from orchestrator.adapters.ansible_playbook import SshTarget, run_playbook
from orchestrator.adapters.domain_xml import DomainSpec, domain_name, mac_for, render_domain_xml
from orchestrator.adapters.libvirt_events import AgentSignal, DomainSignal
from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.core.cell_events import GuestAnswered, GuestSilent, StepFinished
from orchestrator.core.crash_report import parse_console
from orchestrator.core.outcomes import Blame, CellOutcome
from orchestrator.core.plan import CellPlan, InstallStep, StepKind
from orchestrator.engine.cell_driver import Evidence, Post
from orchestrator.errors import InfrastructureError, TestbedError
from orchestrator.guests.linux_probe import GuestEndpoint, LinuxReadinessProbe
from orchestrator.guests.run_context import RunContext

STAGE_DIR = "/var/tmp/testbed-candidate"  # noqa: S108 - a path inside the guest, owned by root
DOMAIN_LOG_TAIL_LINES = 200


def staging_script(stage_dir: str, files: list[tuple[str, Path]]) -> str:
    """A POSIX sh script that writes the artifacts into ``stage_dir`` in the guest.

    It travels with ansible's ``script`` module: a file transfer and ``sh``, no Python in the
    guest, which under TCG saves seconds per module. The digests are checked after it ran.
    """
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, path in files:
            tar.add(path, arcname=name)
    payload = base64.encodebytes(archive.getvalue()).decode()
    return (
        "#!/bin/sh\nset -eu\n"
        f"mkdir -p -m 0700 {shlex.quote(stage_dir)}\n"
        f"cd {shlex.quote(stage_dir)}\n"
        "base64 -d <<'TESTBED_ARTIFACTS' | tar -xf - --no-same-owner\n"
        f"{payload}TESTBED_ARTIFACTS\n"
    )


class LinuxLibvirtCell:
    """Carries out one Linux cell's commands on one libvirt host."""

    def __init__(
        self, plan: CellPlan, post: Post, host: LibvirtHost, run: RunContext, domain_type: str
    ) -> None:
        self.plan = plan
        self.host_name = host.name
        self._post = post
        self._host = host
        self._run = run
        self._domain_type = domain_type
        self.domain = domain_name(run.run_id, plan.cell_id)
        self.overlay_name = f"{self.domain}.qcow2"
        self.cell_dir = run.cell_dir(plan.cell_id)
        self.console_log = self.cell_dir / "console.log"
        self._probe = LinuxReadinessProbe(
            host, self.domain, ipaddress.IPv4Network(run.settings.network_cidr), run.ssh_public_key
        )
        self._endpoint: GuestEndpoint | None = None
        self._step_cancel = threading.Event()
        self._step_thread: threading.Thread | None = None
        self._defined = False
        self._pool_dir = run.settings.pool_dir(host.config)

    # -- provisioning -----------------------------------------------------------------------

    def provision(self) -> None:
        record = self._run.images[self.plan.image.name]
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        self.cell_dir.chmod(0o755)
        self._host.subscribe(self.domain, self._on_signal)
        overlay = self._host.create_overlay(self._pool_dir, self.overlay_name, record.disk)
        spec = DomainSpec(
            name=self.domain,
            run_id=self._run.run_id,
            cell_id=self.plan.cell_id,
            image_name=record.name,
            image_digest=record.digest,
            domain_type="kvm" if self._domain_type == "kvm" else "qemu",
            memory_mib=self.plan.resources.memory_mib,
            vcpus=self.plan.resources.vcpus,
            kernel=record.kernel_image,
            initrd=record.initrd,
            cmdline=record.kernel_cmdline,
            disk=overlay,
            network=self._run.settings.network_name,
            mac=mac_for(self.domain),
            console_log=self.console_log,
        )
        xml = render_domain_xml(spec, "domain-linux.xml.j2")
        (self.cell_dir / "domain.xml").write_text(xml)
        self._defined = True
        self._host.define_and_start(xml)

    def _on_signal(self, signal: DomainSignal) -> None:
        if isinstance(signal, AgentSignal):
            if signal.connected:
                self._probe.wake()
            return
        self._post(signal)

    # -- readiness --------------------------------------------------------------------------

    def start_probe(self, boot: int, stale_mark: str | None) -> None:
        del boot  # the boot mark, not the count, tells boots apart
        self._probe.start(stale_mark, self._on_ready)

    def _on_ready(self, endpoint: GuestEndpoint) -> None:
        self._endpoint = endpoint
        self._post(GuestAnswered(endpoint.boot_mark))

    def stop_probe(self) -> None:
        self._probe.stop()

    def request_reboot(self, boot: int) -> None:
        del boot
        self._host.reboot_guest(self.domain)

    # -- install steps ----------------------------------------------------------------------

    def start_step(self, step: InstallStep) -> None:
        if self._endpoint is None:
            raise InfrastructureError("no guest address: the probe never answered")
        if step.kind is not StepKind.CANDIDATE:
            raise InfrastructureError(f"{step}: co-installed products are not installable yet")
        self._step_cancel = threading.Event()
        target = SshTarget(self._endpoint.address, "root", self._run.ssh_private_key)
        self._step_thread = threading.Thread(
            target=self._run_candidate_step, args=(step, target, self._step_cancel), daemon=True
        )
        self._step_thread.start()

    def _candidate_vars(self) -> dict[str, Any]:
        candidate = self._run.candidate
        package = candidate.sensor_package(self.plan.image.os_family)
        if package is None:
            raise InfrastructureError(f"the candidate has no sensor package for {self.plan.image.os_family}")
        artifacts = candidate.artifacts_for(self.plan.image.os_family)
        bundle = self._run.work_dir / self.plan.cell_id / "stage-artifacts.sh"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_text(
            staging_script(STAGE_DIR, [(Path(a.path).name, candidate.path_of(a)) for a in artifacts])
        )
        installer_args: list[str] = []
        for content in candidate.content_files():
            installer_args += ["--content", f"{STAGE_DIR}/{Path(content.path).name}"]
        return {
            "testbed_stage_dir": STAGE_DIR,
            "testbed_bundle": str(bundle),
            "testbed_artifacts": [
                {"name": a.name, "kind": str(a.kind), "file": Path(a.path).name, "sha256": a.sha256}
                for a in artifacts
            ],
            "testbed_sensor_package": Path(package.path).name,
            "testbed_installer_args": installer_args,
        }

    def _run_candidate_step(self, step: InstallStep, target: SshTarget, cancel: threading.Event) -> None:
        try:
            result = run_playbook(
                playbook=self._run.playbooks_dir / "linux" / "install_candidate.yml",
                private_data_dir=self._run.work_dir / self.plan.cell_id / "ansible" / "install_candidate",
                target=target,
                extravars=self._candidate_vars(),
                events_log=self.cell_dir / "ansible-events.jsonl",
                timeout_s=self.plan.timeouts.install_s,
                cancel=cancel,
            )
        except (TestbedError, OSError) as exc:
            self._post(StepFinished(step, ok=False, blame=Blame.INFRASTRUCTURE, detail=str(exc)))
            return
        if cancel.is_set():
            return
        if result.unreachable and not self._agent_alive():
            self._post(GuestSilent(f"SSH dropped ({result.detail}) and the guest agent is silent"))
            return
        self._post(StepFinished(step, ok=result.ok, blame=result.blame, detail=result.detail))

    def _agent_alive(self) -> bool:
        try:
            self._host.agent_command(self.domain, "guest-ping", timeout=10)
        except InfrastructureError:
            return False
        return True

    def cancel_step(self) -> None:
        self._step_cancel.set()

    # -- evidence and teardown --------------------------------------------------------------

    def collect_evidence(self, outcome: CellOutcome, reason: str, summary: dict[str, Any]) -> Evidence:
        evidence = Evidence(directory=str(self.cell_dir))
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        state = self._host.domain_state(self.domain) if self._defined else None
        console = self.console_log.read_text(errors="replace") if self.console_log.exists() else ""
        report = parse_console(console) if console else None
        if report is not None and outcome is not CellOutcome.PASSED:
            evidence.crash = report.as_dict()
            (self.cell_dir / "crash.json").write_text(json.dumps(evidence.crash, indent=2) + "\n")
        self._copy_domain_log(evidence)
        files = sorted(path.name for path in self.cell_dir.iterdir())
        summary = {
            **summary,
            "domain": self.domain,
            "host": self.host_name,
            "domain_state_at_end": list(state) if state else None,
            "crash": evidence.crash,
            "files": files,
        }
        (self.cell_dir / "cell.json").write_text(json.dumps(summary, indent=2) + "\n")
        return evidence

    def _copy_domain_log(self, evidence: Evidence) -> None:
        if not self._host.config.is_local:
            evidence.warnings.append("domain log not copied: remote host logs are not fetched yet")
            return
        source = self._host.config.log_dir / f"{self.domain}.log"
        if not source.exists():
            return
        lines = source.read_text(errors="replace").splitlines()[-DOMAIN_LOG_TAIL_LINES:]
        (self.cell_dir / "domain.log").write_text("\n".join(lines) + "\n")

    def teardown(self) -> None:
        """Remove the domain and the overlay whatever happened; report every failure at the end."""
        self._probe.stop()
        self._step_cancel.set()
        self._host.unsubscribe(self.domain)
        problems = []
        try:
            self._host.remove_domain(self.domain)
        except InfrastructureError as exc:
            problems.append(str(exc))
        try:
            self._host.delete_overlay(self._pool_dir, self.overlay_name)
        except InfrastructureError as exc:
            problems.append(str(exc))
        if self._host.config.is_local:
            (self._host.config.log_dir / f"{self.domain}.log").unlink(missing_ok=True)
        if problems:
            raise InfrastructureError("; ".join(problems))
