"""What every cell of one run shares: ids, directories, the run's SSH key, the candidate, images."""

import threading
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.adapters.process import run_tool
from orchestrator.candidate import Candidate
from orchestrator.config import Settings
from orchestrator.images.catalog import ImageRecord
from orchestrator.products import Product


@dataclass(frozen=True)
class RunContext:
    """Shared by the cells of one run."""

    run_id: str
    settings: Settings
    candidate: Candidate
    images: dict[str, ImageRecord]
    run_dir: Path  # evidence lives here: run.json, events.jsonl, cells/<cell>/...
    work_dir: Path  # scratch: the key pair, per cell ansible dirs, known_hosts, staged copies
    playbooks_dir: Path
    ssh_private_key: Path
    ssh_public_key: str
    products: dict[str, Product] = field(default_factory=dict)
    activity_script: Path | None = None  # the workload, written into work_dir
    variant_seed: int = 0
    _domain_types: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def cell_dir(self, cell_id: str, attempt: int = 1) -> Path:
        """Evidence of one attempt: cells/<cell>/, and cells/<cell>/attempt-<n>/ for retries."""
        base = self.run_dir / "cells" / cell_id
        return base if attempt == 1 else base / f"attempt-{attempt}"

    def cell_work_dir(self, cell_id: str, attempt: int = 1) -> Path:
        return self.work_dir / f"{cell_id}@{attempt}"

    def domain_type(self, host: LibvirtHost) -> str:
        """'kvm' or 'qemu' for a host, probed once per run."""
        with self._lock:
            if host.name not in self._domain_types:
                self._domain_types[host.name] = host.domain_type()
            return self._domain_types[host.name]


def make_ssh_key(directory: Path, comment: str) -> tuple[Path, str]:
    """A fresh ed25519 key pair for one run; the public half goes into guests via the agent."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    private = directory / "id_ed25519"
    if not private.exists():
        run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", private])
    return private, private.with_suffix(".pub").read_text().strip()
