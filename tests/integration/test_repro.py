"""testbed repro on a real guest: a crashed Linux cell, booted again from what the repro wrote,
crashes the same way — and leaves no domain or overlay behind."""

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.main import app
from orchestrator.config import Settings
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import RunEvent
from orchestrator.engine.gate import prepare_gate, run_gate
from orchestrator.images.build import build_images
from orchestrator.images.catalog import ImageRecord
from orchestrator.images.definition import load_definitions
from tests.conftest import IMAGE_DEFINITION_DIRS
from tests.integration.conftest import find_leftovers

pytestmark = pytest.mark.integration

IMAGE = "debian12-kernel-n-fast"  # the OS is not the point: the repro is
MATRIX = f"""
name: repro-source
images: [{IMAGE}]
reboots: 1
timeouts: {{ready: 420, stability: 10, install: 600, soak: 30}}
"""
BOOT_TIMEOUT_S = 1500.0  # one cell under TCG takes minutes; only reached if something hangs


@pytest.fixture(scope="module")
def kernel_n(settings: Settings) -> ImageRecord:
    """Only the image this test boots and the base it is cut from (cached by digest: built once,
    if ever)."""
    results = build_images(
        load_definitions(IMAGE_DEFINITION_DIRS),
        settings.images_dir,
        settings.debian_mirror,
        progress=lambda _: None,
        names=[IMAGE],
        overlay_dirs=tuple(settings.pool_dir(host) for host in settings.hosts),
    )
    (record,) = [result.record for result in results if result.record.name == IMAGE]
    return record


def test_a_crashed_cell_boots_again_and_crashes_the_same_way(
    settings: Settings, kernel_n: ImageRecord, sample_candidates: dict[str, Path], tmp_path: Path
) -> None:
    del kernel_n  # cataloged: the gate and the repro find it by digest
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(MATRIX)
    events: list[RunEvent] = []
    original = run_gate(
        settings, prepare_gate(settings, matrix, sample_candidates["zero-filled"]), events.append
    )
    (cell,) = original.cells
    assert cell.outcome is CellOutcome.CRASHED, cell.reason
    title = (cell.crash or {}).get("title")
    assert title and "tbs_match_template [testbed_sensor]" in title
    evidence = Path(cell.evidence_dir or "")
    # QEMU's GUEST_PANICKED arrived through libvirt's monitor events: pvpanic brings no crash details
    # (its action is "run": the host sets QEMU's panic action to none so the console gets the report)
    (panicked, *_) = json.loads((evidence / "panic.json").read_text())
    assert panicked["event"] == "GUEST_PANICKED" and "action" in panicked["data"]
    assert "info" not in panicked["data"]

    out = tmp_path / "repro"
    written = CliRunner().invoke(app, ["repro", original.run_id, cell.cell_id, "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert f"boot it: {out / 'boot.sh'}" in written.output

    booted = subprocess.run(
        [str(out / "boot.sh"), "--json"], capture_output=True, text=True, timeout=BOOT_TIMEOUT_S, check=False
    )
    assert booted.returncode == 1, booted.stderr[-3000:]  # failed again: the candidate crashed the guest
    summary = json.loads(booted.stdout)
    assert summary["verdict"] == str(RunVerdict.FAILED)
    assert (summary["outcome"], summary["crash_title"]) == ("crashed", title), summary
    assert summary["reproduced"] is True
    repro_cell_dir = Path(summary["evidence_dir"])
    # the domain the repro wrote is the domain that booted
    assert (repro_cell_dir / "domain.xml").read_text() == (out / "domain.xml").read_text()
    for run_id in (original.run_id, summary["repro_run_id"]):
        domains, overlays = find_leftovers(settings, run_id)
        assert (domains, overlays) == ([], []), f"run {run_id} left {domains} {overlays}"
