"""Running host tools (qemu-img, debootstrap, make) with their output kept for when they fail."""

import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator.errors import InfrastructureError


def run_tool(
    argv: Sequence[str | Path],
    *,
    log: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run a command; return its output, or raise ``InfrastructureError`` with the tail of it.

    With ``log`` the output is appended there too, so a long build can be read afterwards.
    """
    command = [str(part) for part in argv]
    try:
        completed = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InfrastructureError(f"{command[0]} is not installed (run 'make setup')") from exc
    except subprocess.TimeoutExpired as exc:
        raise InfrastructureError(f"{' '.join(command)} did not finish within {timeout:g}s") from exc
    if log is not None:
        with log.open("a") as stream:
            stream.write(f"$ {' '.join(command)}\n{completed.stdout}\n")
    if completed.returncode != 0:
        tail = "\n".join(completed.stdout.strip().splitlines()[-15:])
        raise InfrastructureError(f"{' '.join(command)} exited with {completed.returncode}:\n{tail}")
    return completed.stdout
