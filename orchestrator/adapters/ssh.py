"""Commands in a guest over SSH: the run's key, the guest's pinned host key, bounded in time."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InfrastructureError

SSH_TRANSPORT_FAILED = 255
"""ssh's own exit status when it could not connect or authenticate (the command's are 0-254)."""


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in, and the host key the guest must present."""

    address: str
    user: str
    private_key: Path
    known_hosts: Path | None = None  # pinned: the guest's host key as its agent reported it


@dataclass(frozen=True)
class SshResult:
    exit_code: int
    output: str


def ssh_options(target: SshTarget) -> list[str]:
    """Options for ssh (and for ansible's ``ansible_ssh_common_args``)."""
    pinned = (
        ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={target.known_hosts}"]
        if target.known_hosts is not None
        else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    )
    return [
        *pinned,
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR",
        # A guest that dies mid-command must drop the connection quickly, not after TCP gives up.
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
    ]  # fmt: skip


def run_ssh(target: SshTarget, command: str, timeout_s: float) -> SshResult:
    """Run ``command`` (a shell command line) in the guest; transport failures raise."""
    login = f"{target.user}@{target.address}"
    argv = ["ssh", *ssh_options(target), "-i", str(target.private_key), login, command]
    try:
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InfrastructureError(f"ssh {target.address}: no answer within {timeout_s:g}s") from exc
    except FileNotFoundError as exc:
        raise InfrastructureError("ssh is not installed (run 'make setup')") from exc
    if completed.returncode == SSH_TRANSPORT_FAILED:
        raise InfrastructureError(f"ssh {target.address}: {completed.stderr.strip()[-300:] or 'failed'}")
    return SshResult(completed.returncode, (completed.stdout + completed.stderr)[-8192:])
