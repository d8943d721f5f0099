"""Windows playbooks through ansible-runner: the cell's WinRM inventory instead of an SSH target.

The events are recorded and classified exactly as the Linux playbooks' are (``adapters.
ansible_playbook``): a failed task named ``candidate: ...`` is the candidate's fault, anything else,
an unreachable guest included, the testbed's. The ``ansible.windows`` collection comes from
ANSIBLE_COLLECTIONS_PATH, else from where ansible or Debian's ``ansible`` package put it.
"""

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ansible_runner

# The recorder and the classification are the Linux runner's own, so both families' install
# failures are blamed by the same rules. (They become public when that module takes an inventory.)
from orchestrator.adapters.ansible_playbook import _classify, _EventRecorder
from orchestrator.guests.windows.channel import StepOutcome, StepRunner

COLLECTION_ROOTS = (
    Path.home() / ".ansible" / "collections",
    Path("/usr/share/ansible/collections"),
    Path("/usr/lib/python3/dist-packages"),  # Debian's `ansible` package
)


def windows_collections_path(
    environment: dict[str, str] | None = None, roots: Sequence[Path] = COLLECTION_ROOTS
) -> str | None:
    """Where ``ansible.windows`` is installed, as an ANSIBLE_COLLECTIONS_PATH value (None: nowhere)."""
    configured = (environment if environment is not None else dict(os.environ)).get(
        "ANSIBLE_COLLECTIONS_PATH"
    )
    if configured:
        return configured
    for root in roots:
        if (root / "ansible_collections" / "ansible" / "windows" / "MANIFEST.json").is_file():
            return str(root)
    return None


def ansible_step_runner(*, work_dir: Path, events_log: Path, timeout_s: float) -> StepRunner:
    """A ``StepRunner`` for one cell: one private_data_dir per playbook run, events appended to
    ``events_log`` (the cell's ansible-events.jsonl)."""
    counter = iter(range(1, 1_000_000))

    def run(
        playbook: Path, inventory: dict[str, Any], extravars: dict[str, Any], cancel: threading.Event
    ) -> StepOutcome:
        private_data_dir = work_dir / "ansible" / f"{next(counter):02d}-{playbook.stem}"
        private_data_dir.mkdir(parents=True, exist_ok=True)
        recorder = _EventRecorder(events_log)
        envvars = {
            "ANSIBLE_LOCAL_TEMP": str(private_data_dir / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            # ansible-playbook lives beside this interpreter, whether or not the venv is activated.
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        collections = windows_collections_path()
        if collections is not None:
            envvars["ANSIBLE_COLLECTIONS_PATH"] = collections
        runner = ansible_runner.run(
            private_data_dir=str(private_data_dir),
            playbook=str(playbook),
            inventory=inventory,
            extravars=extravars,
            envvars=envvars,
            event_handler=recorder,
            cancel_callback=cancel.is_set,
            timeout=max(1, int(timeout_s)),
            quiet=True,
        )
        result = _classify(runner, recorder, timeout_s)
        return StepOutcome(
            ok=result.ok, blame=str(result.blame), detail=result.detail, unreachable=result.unreachable
        )

    return run
