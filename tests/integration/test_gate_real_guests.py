"""The gate, end to end on real QEMU guests: the exact candidate, a real kernel panic, real hangs."""

import json
from pathlib import Path

import pytest

from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import RunEventKind
from tests.integration.conftest import GateRunner

pytestmark = pytest.mark.integration

KERNELS_MATRIX = """
name: kernels-n-and-n1
images: [debian12-kernel-n, debian12-kernel-n1]
reboots: 2
timeouts: {ready: 420, stability: 10, install: 600}
"""


def test_good_candidate_passes_every_boot_on_kernels_n_and_n1(
    gate: GateRunner, sample_candidates: dict[str, Path]
) -> None:
    result, events = gate(KERNELS_MATRIX, sample_candidates["good"])

    assert result.verdict is RunVerdict.PASSED, result.summary
    assert {cell.cell_id: cell.outcome for cell in result.cells} == {
        "debian12-kernel-n": CellOutcome.PASSED,
        "debian12-kernel-n1": CellOutcome.PASSED,
    }
    for cell in result.cells:
        console = (Path(cell.evidence_dir or "") / "console.log").read_text(errors="replace")
        # Loaded by the installer, then by every one of the two reboots: three boots, three loads.
        assert console.count("testbed_sensor: loaded") == 3, console[-3000:]
        assert cell.crash is None
        phases = [timing.phase for timing in cell.timings]
        assert "install candidate" in phases
        assert "boot 3/3: stability window" in phases
    answered = [e for e in events if e.kind is RunEventKind.CELL_CHANGED and e.cause == "GuestAnswered"]
    assert len(answered) == 6  # three boots per cell, each confirmed by a new boot id
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind is RunEventKind.RUN_FINISHED and events[-1].verdict is RunVerdict.PASSED


def test_zero_filled_content_crashes_every_cell_and_names_the_module(
    gate: GateRunner, sample_candidates: dict[str, Path]
) -> None:
    result, _ = gate(KERNELS_MATRIX, sample_candidates["zero-filled"])

    assert result.verdict is RunVerdict.FAILED
    for cell in result.cells:
        assert cell.outcome is CellOutcome.CRASHED, (cell.cell_id, cell.reason)
        assert "panicked" in cell.reason  # reported by libvirt's lifecycle event, not guessed
        assert cell.crash is not None
        assert cell.crash["module"] == "testbed_sensor"
        assert "BUG: kernel NULL pointer dereference" in cell.crash["title"]
        assert "[testbed_sensor]" in cell.crash["title"]
        assert cell.crash["panic_reason"] == "Fatal exception"
        evidence = Path(cell.evidence_dir or "")
        for name in (
            "console.log",
            "crash.json",
            "cell.json",
            "domain.log",
            "domain.xml",
            "ansible-events.jsonl",
        ):
            assert (evidence / name).is_file(), name
        assert json.loads((evidence / "cell.json").read_text())["outcome"] == "crashed"
    run_json = json.loads((Path(result.evidence_dir) / "run.json").read_text())
    assert run_json["verdict"] == "failed"
    assert set(run_json["candidate"]["artifacts"]) == set(result.artifact_digests)


def test_guest_that_never_becomes_ready_is_hung_at_its_deadline(
    gate: GateRunner, sample_candidates: dict[str, Path]
) -> None:
    matrix = """
name: control-hang
images: [control-hang]
timeouts: {ready: 25, stability: 5}
"""
    result, _ = gate(matrix, sample_candidates["good"])

    (cell,) = result.cells
    assert cell.outcome is CellOutcome.HUNG
    assert "did not become ready within 25s" in cell.reason
    assert result.verdict is RunVerdict.FAILED
    console = (Path(cell.evidence_dir or "") / "console.log").read_text(errors="replace")
    assert "control-hang: up" in console  # it did boot: it just never answered


def test_guest_that_keeps_resetting_is_a_boot_loop(
    gate: GateRunner, sample_candidates: dict[str, Path]
) -> None:
    matrix = """
name: control-boot-loop
images: [control-boot-loop]
boot_loop_after: 3
timeouts: {ready: 240, stability: 5}
"""
    result, events = gate(matrix, sample_candidates["good"])

    (cell,) = result.cells
    assert cell.outcome is CellOutcome.BOOT_LOOP, cell.reason
    assert "reset 3 time(s)" in cell.reason
    # Each reboot may reset the machine more than once (kernel, then firmware): counted as one.
    resets = [e for e in events if e.cause == "DomainReset"]
    assert len(resets) >= 3


def test_installer_that_refuses_the_kernel_is_install_failed(
    gate: GateRunner, candidate_without_kernel_n: Path
) -> None:
    matrix = """
name: unsupported-kernel
images: [debian12-kernel-n]
reboots: 0
timeouts: {ready: 420, stability: 5}
"""
    result, _ = gate(matrix, candidate_without_kernel_n)

    (cell,) = result.cells
    assert cell.outcome is CellOutcome.INSTALL_FAILED, cell.reason
    assert "candidate: run the sensor installer" in cell.reason  # blamed on the candidate's task
    assert "kernel 6.1.0-56-amd64 is not supported" in cell.reason
    assert result.verdict is RunVerdict.FAILED
