"""Running a playbook inside a guest with ansible-runner, driven by its callbacks.

One private_data_dir per run (shared ones corrupt each other's variables). Failures are read
from runner events, never from stdout: an unreachable guest is the testbed's trouble, a failed
task named ``candidate: ...`` is the candidate's, any other failed task is the testbed's.
"""

import json
import os
import shlex
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from orchestrator.adapters.ssh import SshTarget, ssh_options
from orchestrator.core.outcomes import Blame

CANDIDATE_TASK_PREFIX = "candidate:"

@dataclass
class PlaybookResult:
    """How a playbook run ended, in the testbed's terms."""

    ok: bool
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    blame: Blame = Blame.CANDIDATE
    detail: str = ""
    unreachable: bool = False
    failed_tasks: list[str] = field(default_factory=list)


def inventory_for(target: SshTarget) -> dict[str, Any]:
    return {
        "all": {
            "hosts": {
                "guest": {
                    "ansible_host": target.address,
                    "ansible_user": target.user,
                    "ansible_ssh_private_key_file": str(target.private_key),
                    "ansible_ssh_common_args": shlex.join(ssh_options(target)),
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
            }
        }
    }


def _failure_text(event: dict[str, Any]) -> str:
    data = event.get("event_data", {})
    result = data.get("res", {}) or {}
    parts = [str(result[key]).strip() for key in ("msg", "stderr", "stdout") if result.get(key)]
    return f"{data.get('task', '?')}: {' | '.join(parts) or 'failed'}"


class _EventRecorder:
    """Writes every runner event to a JSON-lines file and remembers what went wrong."""

    def __init__(self, events_log: Path) -> None:
        self._log = events_log
        self.unreachable: list[str] = []
        self.failed: list[tuple[str, str]] = []  # (task name, description)

    def __call__(self, event: dict[str, Any]) -> bool:
        with self._log.open("a") as stream:
            stream.write(json.dumps(event, default=str) + "\n")
        kind = event.get("event")
        if kind == "runner_on_unreachable":
            self.unreachable.append(_failure_text(event))
        elif kind == "runner_on_failed" and not event.get("event_data", {}).get("ignore_errors"):
            self.failed.append((str(event.get("event_data", {}).get("task", "")), _failure_text(event)))
        return True


def run_playbook(
    *,
    playbook: Path,
    private_data_dir: Path,
    target: SshTarget,
    extravars: dict[str, Any],
    events_log: Path,
    timeout_s: float,
    cancel: threading.Event,
) -> PlaybookResult:
    """Run to completion (or timeout, or cancel) and classify the result."""
    private_data_dir.mkdir(parents=True, exist_ok=True)
    recorder = _EventRecorder(events_log)
    # ssh control sockets must fit in 108 bytes: a deep private_data_dir would not.
    with tempfile.TemporaryDirectory(prefix="tb-ssh-") as control_dir:
        runner = ansible_runner.run(
            private_data_dir=str(private_data_dir),
            playbook=str(playbook),
            inventory=inventory_for(target),
            extravars=extravars,
            envvars={
                # The guest's host key is pinned (ssh_options): ansible must not switch checking off.
                "ANSIBLE_HOST_KEY_CHECKING": "True" if target.known_hosts else "False",
                "ANSIBLE_LOCAL_TEMP": str(private_data_dir / "tmp"),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir,
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                # Guests under TCG start Python slowly: send modules down the open connection.
                "ANSIBLE_PIPELINING": "True",
                # ansible-playbook lives beside this interpreter, whether or not the venv is activated.
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            },
            event_handler=recorder,
            cancel_callback=cancel.is_set,
            timeout=max(1, int(timeout_s)),
            quiet=True,
        )
    return _classify(runner, recorder, timeout_s)


def _classify(runner: Any, recorder: "_EventRecorder", timeout_s: float) -> PlaybookResult:
    status = str(runner.status)
    if status == "successful":
        return PlaybookResult(ok=True, status=status)
    if status == "canceled":
        return PlaybookResult(ok=False, status=status, blame=Blame.CANCELED, detail="canceled")
    if recorder.unreachable:
        return PlaybookResult(
            ok=False,
            status=status,
            blame=Blame.INFRASTRUCTURE,
            detail=recorder.unreachable[0],
            unreachable=True,
        )
    if status == "timeout":
        return PlaybookResult(
            ok=False, status=status, blame=Blame.CANDIDATE, detail=f"did not finish within {timeout_s:g}s"
        )
    if recorder.failed:
        task, description = recorder.failed[0]
        blame = Blame.CANDIDATE if task.startswith(CANDIDATE_TASK_PREFIX) else Blame.INFRASTRUCTURE
        return PlaybookResult(
            ok=False,
            status=status,
            blame=blame,
            detail=description,
            failed_tasks=[t for t, _ in recorder.failed],
        )
    return PlaybookResult(
        ok=False,
        status=status,
        blame=Blame.INFRASTRUCTURE,
        detail=f"ansible-runner ended {status} (rc {runner.rc})",
    )
