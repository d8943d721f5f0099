"""Builders for Windows cells in unit tests: a candidate with a Windows sensor, an image record
whose files are dummies, a run context, and a host that answers like libvirt's guest agent."""

import hashlib
import json
from pathlib import Path

import yaml

from orchestrator.adapters.libvirt_host import ExecResult
from orchestrator.candidate import load_candidate
from orchestrator.config import HostConfig, Settings
from orchestrator.core.plan import CellPlan, ImageFacts
from orchestrator.errors import InfrastructureError
from orchestrator.guests.run_context import RunContext
from orchestrator.images.catalog import ImageRecord
from tests.unit.conftest import build_plan

RUN_ID = "20261125-171500-ab12"
MSI = b"MSI package bytes of the sensor\n"
CHANNEL = bytes(range(64))
WIN11_DIGEST = "fedcba9876543210" * 4


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_candidate(root: Path, *, health_check: str | None = "CSAgent", package: str = "sensor.msi") -> Path:
    """A candidate with a Windows sensor package and one content file."""
    (root / "content").mkdir(parents=True, exist_ok=True)
    (root / package).write_bytes(MSI)
    (root / "content" / "C-00000291.sys").write_bytes(CHANNEL)
    sensor = {
        "name": "sensor-windows",
        "kind": "sensor_package",
        "os_family": "windows",
        "path": package,
        "sha256": sha256(MSI),
    }
    if health_check is not None:
        sensor["health_check"] = health_check
    content = {
        "name": "channel-291",
        "kind": "content",
        "path": "content/C-00000291.sys",
        "sha256": sha256(CHANNEL),
    }
    manifest = {"name": "falcon-like", "version": "7.16.0", "artifacts": [sensor, content]}
    (root / "candidate.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return root


def windows_record(images_dir: Path, *, name: str = "win11-24h2", secure_boot: bool = True) -> ImageRecord:
    """A Windows image record whose disk and variable store exist (as dummies)."""
    directory = images_dir / f"{name}-{WIN11_DIGEST[:12]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "disk.qcow2").write_bytes(b"QFI\xfb")
    (directory / "efivars.fd").write_bytes(b"\0" * 16)
    return ImageRecord(
        name=name,
        kind="windows-packer",
        os_family="windows",
        os_version="windows-11-24h2",
        kernel="windows-11-24h2",
        digest=WIN11_DIGEST,
        directory=directory,
        disk=directory / "disk.qcow2",
        built_at=1_795_000_000.0,
        disk_bytes=4,
        secure_boot=secure_boot,
        tpm=True,
        nvram_template=directory / "efivars.fd",
    )


def windows_plan(record: ImageRecord, **changes: object) -> CellPlan:
    image = ImageFacts(
        name=record.name,
        os_family="windows",
        os_version=record.os_version,
        kernel=record.kernel,
        digest=record.digest,
    )
    fields: dict = {"cell_id": record.name, "image": image, "memory_mib": 4096, **changes}
    return build_plan(**fields)


def run_context(tmp_path: Path, record: ImageRecord, candidate: Path) -> RunContext:
    settings = Settings(state_dir=tmp_path / "state", hosts=[HostConfig(name="local")])
    run_dir = settings.runs_dir / RUN_ID
    return RunContext(
        run_id=RUN_ID,
        settings=settings,
        candidate=load_candidate(candidate),
        images={record.name: record},
        run_dir=run_dir,
        work_dir=run_dir / "work",
        playbooks_dir=Path(__file__).resolve().parents[3] / "playbooks",
        ssh_private_key=run_dir / "work" / "id_ed25519",
        ssh_public_key="ssh-ed25519 AAAA test",
    )


class AgentHost:
    """What the Windows channel asks of libvirt: addresses, the agent's ping and exec, a reboot."""

    def __init__(self, *, addresses=("192.168.123.7",), agent: bool = True, agent_boot_id: int | None = 58):
        self.name = "local"
        self.config = HostConfig(name="local")
        self.addresses = list(addresses)
        self.agent = agent
        self.agent_boot_id = agent_boot_id
        self.calls: list[tuple[str, ...]] = []

    def guest_ipv4_addresses(self, name: str) -> list[str]:
        return self.addresses

    def agent_command(self, name: str, command: str, arguments=None, timeout: int = 5):
        self.calls.append(("agent", command))
        if not self.agent:
            raise InfrastructureError(f"guest agent of {name}: {command}: not connected")
        return {}

    def agent_exec(self, name: str, path: str, arguments: list[str], *, timeout_s: float = 10.0, sleep=None):
        self.calls.append(("exec", path))
        if not self.agent:
            raise InfrastructureError(f"guest agent of {name}: not connected")
        facts = {"last_boot_up_time": "2026-11-25T17:07:55Z", "boot_id": self.agent_boot_id, "build": "26100"}
        return ExecResult(0, json.dumps(facts), "")

    def reboot_guest(self, name: str) -> None:
        self.calls.append(("reboot-agent", name))
