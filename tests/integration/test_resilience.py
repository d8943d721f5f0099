"""The testbed's own trouble is never the candidate's (issue 9): libvirtd restarting under a run,
and two gates sharing one host."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.config import Settings
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import RunEvent
from orchestrator.images.catalog import ImageRecord
from tests.integration.conftest import GateRunner, find_leftovers

pytestmark = pytest.mark.integration

TESTBED = str(Path(sys.executable).parent / "testbed")


def restart_libvirtd() -> None:
    """Kill libvirtd the hard way and start it again, as a crash and a restart would."""
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "kill", "-s", "KILL", "libvirtd.service"], check=False)
        time.sleep(2)
        subprocess.run(["systemctl", "start", "libvirtd.service"], check=True)
        return
    subprocess.run(["pkill", "-KILL", "-x", "libvirtd"], check=False)
    time.sleep(2)
    subprocess.run(["libvirtd", "-d"], check=True)


@pytest.mark.exclusive
def test_libvirtd_restarted_during_a_cell_is_never_passed_nor_hung(
    gate: GateRunner, sample_candidates: dict[str, Path]
) -> None:
    matrix = """
name: libvirtd-restart
images: [debian12-kernel-n-fast]
reboots: 1
retries: 0
timeouts: {ready: 300, stability: 5, soak: 30}
"""
    restarted = threading.Event()

    def restart_once_installed(event: RunEvent) -> None:
        if (
            event.attempt == 1
            and event.phase == "boot 1/2: stability window after install"
            and not restarted.is_set()
        ):
            restarted.set()
            threading.Thread(target=restart_libvirtd, daemon=True).start()

    result, events = gate(matrix, sample_candidates["good"], restart_once_installed)

    # No retry: the retry of an infra_error is the broken-boot test's; this one is about the
    # attempt libvirtd vanished under (a retry is a whole passing cell run alone: two minutes).
    assert restarted.is_set()
    (cell,) = result.cells
    assert (cell.outcome, cell.attempt, cell.earlier_attempts) == (CellOutcome.INFRA_ERROR, 1, [])
    assert "lost the connection to the libvirt host" in cell.reason
    assert result.verdict is RunVerdict.INCONCLUSIVE
    outcomes = {e.outcome for e in events if e.outcome is not None}
    assert CellOutcome.HUNG not in outcomes and CellOutcome.CRASHED not in outcomes
    assert any(e.state is CellState.RECONNECTING for e in events)


def test_two_gates_at_once_never_run_more_cells_than_slots(
    tmp_path: Path, settings: Settings, images: dict[str, ImageRecord], sample_candidates: dict[str, Path]
) -> None:
    """Two processes on one host with one slot: their cells run one after the other."""
    del images
    config = tmp_path / "one-slot.yaml"
    config.write_text(yaml.safe_dump({"hosts": [{"name": settings.hosts[0].name, "max_cells": 1}]}))
    environment = {**os.environ, "TESTBED_CONFIG": str(config)}
    gates = []
    for name in ("first", "second"):
        matrix = tmp_path / f"{name}.yaml"
        matrix.write_text(f"name: {name}\nimages: [control-hang]\ntimeouts: {{ready: 15, stability: 5}}\n")
        command = [
            TESTBED,
            "gate",
            "--matrix",
            str(matrix),
            "--candidate",
            str(sample_candidates["good"]),
            "--json",
        ]
        gates.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
            )
        )
    outputs = [
        gate.communicate(timeout=2400) for gate in gates
    ]  # slots may be busy with other workers' cells
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert [gate.returncode for gate in gates] == [0, 0], [stderr for _, stderr in outputs]
    spans = []
    for result in results:
        with (Path(result["evidence_dir"]) / "events.jsonl").open() as stream:
            events = [json.loads(line) for line in stream]
        started = min(e["at"] for e in events if e["state"] == "provisioning")
        # the cell's own "done" comes after its teardown and before its slot is released
        ended = max(e["at"] for e in events if e["kind"] == "cell_changed" and e["state"] == "done")
        spans.append((started, ended))
        assert find_leftovers(settings, result["run_id"]) == ([], [])
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start, f"the cells overlapped: {spans}"
