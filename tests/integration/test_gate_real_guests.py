"""The gate, end to end on real QEMU guests: the exact candidate, a real kernel panic, real hangs."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.attest import attest_run, create_key_pair, load_signer
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import RunEvent, RunEventKind, RunResult
from tests.integration.conftest import Batch, GateRunner

TESTBED_VERIFY = [str(Path(sys.executable).parent / "testbed"), "verify"]

pytestmark = pytest.mark.integration

# The whole OS (systemd, sshd, the sensor loaded by modules-load.d) on kernel N; kernel N-1, the
# kernel the 2024-04 customers ran, on its fast-boot image: there the kernel is the point, and a
# second full Debian cost the suite five minutes of a slot.
KERNELS_MATRIX = """
name: kernels-n-and-n1
images: [debian12-kernel-n, debian12-kernel-n1-fast]
reboots: 1
timeouts: {ready: 420, stability: 10, install: 600, soak: 30}
"""


# The crash is the kernel's, not the OS's: the fast-boot images of the same two kernels.
CRASH_MATRIX = """
name: kernels-n-and-n1-fast
images: [debian12-kernel-n-fast, debian12-kernel-n1-fast]
reboots: 1
timeouts: {ready: 420, stability: 10, install: 600, soak: 30}
"""


@pytest.fixture(scope="module")
def kernel_runs(start_batch: Callable[..., Batch], sample_candidates: dict[str, Path]) -> Batch:
    """The sample sensor with good and with zero-filled content on kernels N and N-1, all at once."""
    return start_batch(
        {
            "good": (KERNELS_MATRIX, sample_candidates["good"]),
            "zero-filled": (CRASH_MATRIX, sample_candidates["zero-filled"]),
        }
    )


def read_events(result: RunResult) -> list[RunEvent]:
    with (Path(result.evidence_dir) / "events.jsonl").open() as stream:
        return [RunEvent.from_dict(json.loads(line)) for line in stream]


def test_good_candidate_passes_every_boot_on_kernels_n_and_n1(kernel_runs: Batch) -> None:
    result = kernel_runs.result("good")

    assert result.verdict is RunVerdict.PASSED, result.summary
    assert {cell.cell_id: cell.outcome for cell in result.cells} == {
        "debian12-kernel-n": CellOutcome.PASSED,
        "debian12-kernel-n1-fast": CellOutcome.PASSED,
    }
    for cell in result.cells:
        console = (Path(cell.evidence_dir or "") / "console.log").read_text(errors="replace")
        # Loaded by the installer, then at the reboot's boot: two boots, two loads.
        assert console.count("testbed_sensor: loaded") == 2, console[-3000:]
        assert cell.crash is None
        phases = [timing.phase for timing in cell.timings]
        assert "install candidate" in phases
        assert "boot 2/2: stability window" in phases
        assert "boot 2/2: soak window" in phases
        probes_file = Path(cell.evidence_dir or "") / "probes.jsonl"
        probes = [json.loads(line) for line in probes_file.read_text().splitlines()]
        # every boot probed: the baseline, after install, after the reboot, after the soak
        assert [probe["boot"] for probe in probes] == [0, 0, 1, 1]
        assert all(probe["agent_ok"] and probe["ssh_ok"] for probe in probes)
        assert [probe["health_rc"] for probe in probes] == [None, 0, 0, 0]  # the sensor's own check
        assert "testbed-sensor-health: ok" in probes[-1]["health_output"]
    events = read_events(result)
    answered = [e for e in events if e.kind is RunEventKind.CELL_CHANGED and e.cause == "GuestAnswered"]
    assert len(answered) == 4  # two boots per cell, each confirmed by a new boot id
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind is RunEventKind.RUN_FINISHED and events[-1].verdict is RunVerdict.PASSED


def test_zero_filled_content_crashes_every_cell_and_names_the_module(kernel_runs: Batch) -> None:
    result = kernel_runs.result("zero-filled")

    assert result.verdict is RunVerdict.FAILED
    for cell in result.cells:
        assert cell.outcome is CellOutcome.CRASHED, (cell.cell_id, cell.reason)
        assert "panicked" in cell.reason  # reported by libvirt's lifecycle event, not guessed
        assert cell.crash is not None
        assert cell.crash["module"] == "testbed_sensor"
        # normalized: no address, so the same bug on N and N-1 has one title
        assert (
            cell.crash["title"]
            == "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
        )
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
    (group,) = run_json["groups"]  # one bug, one group, both kernels in it
    assert sorted(group["cells"]) == ["debian12-kernel-n-fast", "debian12-kernel-n1-fast"]


def test_a_passing_run_is_signed_and_verifies_for_exactly_its_bytes(
    kernel_runs: Batch, sample_candidates: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 14 on a real gate result: the VSA verifies for the exact files, refuses a changed byte,
    and the zero-filled run yields no passing statement at all."""
    keys = create_key_pair(tmp_path / "keys", b"correct horse")
    signer = load_signer(keys.private_key, b"correct horse")
    good = kernel_runs.result("good")
    paths = attest_run(
        Path(good.evidence_dir),
        signer,
        verifier_id="urn:endpoint-testbed:test",
        matrix_digest=good.matrix_sha256,
        matrix_uri="file:///test/kernels.yaml",
    )
    assert paths.vsa is not None
    artifacts = sorted(
        p for p in sample_candidates["good"].rglob("*") if p.is_file() and p.name != "candidate.yaml"
    )
    verify = [
        *TESTBED_VERIFY,
        *map(str, artifacts),
        "--attestation",
        str(paths.vsa),
        "--key",
        str(keys.public_key),
    ]
    accepted = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    tampered = tmp_path / "channel.bin"
    content = next(p for p in artifacts if p.suffix == ".bin")
    tampered.write_bytes(content.read_bytes()[:-1] + b"\x01")
    refused = subprocess.run(
        [*TESTBED_VERIFY, str(tampered), "--attestation", str(paths.vsa), "--key", str(keys.public_key)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    zero = kernel_runs.result("zero-filled")
    failed = attest_run(
        Path(zero.evidence_dir),
        signer,
        verifier_id="urn:endpoint-testbed:test",
        matrix_digest=zero.matrix_sha256,
        matrix_uri="file:///test/kernels.yaml",
    )
    zero_artifacts = [
        p for p in sample_candidates["zero-filled"].rglob("*") if p.is_file() and p.suffix == ".bin"
    ]
    if failed.vsa is not None:
        verdict = subprocess.run(
            [
                *TESTBED_VERIFY,
                *map(str, zero_artifacts),
                "--attestation",
                str(failed.vsa),
                "--key",
                str(keys.public_key),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verdict.returncode == 1  # a FAILED verdict never verifies


def test_control_image_that_keeps_resetting_is_a_boot_loop_as_declared(
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
    # The testbed's own loop detection works: the control image did what it is there to do.
    assert (cell.observed, cell.expected_outcome) == (CellOutcome.BOOT_LOOP, CellOutcome.BOOT_LOOP), (
        cell.reason
    )
    assert "reset 3 time(s)" in cell.reason
    assert cell.attempt == 1  # a control image is not retried
    assert result.verdict is RunVerdict.PASSED
    # Each reboot may reset the machine more than once (kernel, then firmware): counted as one.
    resets = [e for e in events if e.cause == "DomainReset"]
    assert len(resets) >= 3


def test_installer_that_refuses_the_kernel_is_install_failed(
    gate: GateRunner, candidate_without_kernel_n: Path
) -> None:
    matrix = """
name: unsupported-kernel
images: [debian12-kernel-n-fast]
reboots: 1
timeouts: {ready: 420, stability: 5}
"""
    result, _ = gate(matrix, candidate_without_kernel_n)

    (cell,) = result.cells
    assert cell.outcome is CellOutcome.INSTALL_FAILED, cell.reason
    assert "candidate: run the sensor installer" in cell.reason  # blamed on the candidate's task
    assert "kernel 6.1.0-56-amd64 is not supported" in cell.reason
    assert result.verdict is RunVerdict.FAILED
