"""What every cell of one run shares: ids, directories, the run's SSH key, the candidate, images."""

from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters.process import run_tool
from orchestrator.candidate import Candidate
from orchestrator.config import Settings
from orchestrator.images.catalog import ImageRecord


@dataclass(frozen=True)
class RunContext:
    """Shared by the cells of one run."""

    run_id: str
    settings: Settings
    candidate: Candidate
    images: dict[str, ImageRecord]
    run_dir: Path  # evidence lives here: run.json, events.jsonl, cells/<cell>/...
    work_dir: Path  # scratch: ansible private data dirs, the key pair
    playbooks_dir: Path
    ssh_private_key: Path
    ssh_public_key: str

    def cell_dir(self, cell_id: str) -> Path:
        return self.run_dir / "cells" / cell_id


def make_ssh_key(directory: Path, comment: str) -> tuple[Path, str]:
    """A fresh ed25519 key pair for one run; the public half goes into guests via the agent."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / "id_ed25519"
    if not private.exists():
        run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", private])
    return private, private.with_suffix(".pub").read_text().strip()
