"""The matrix dimensions that would have caught past incidents (issue 12), on real guests.

Every run of this module starts at once on the fast-boot image (the OS is not the point here),
with the sample sensor (samples/linux-sensor), its DLP agent product (samples/linux-dlp) and the
activity workload (samples/activity). Each test reads its own run's result.
"""

import base64
import hashlib
import importlib.util
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.candidate import load_candidate
from orchestrator.config import Settings
from orchestrator.core.content_variants import COUNT_VARIANTS, SIMPLE_VARIANTS, expand_variants
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from tests.conftest import REPO_ROOT
from tests.integration.conftest import Batch, activity_outputs

pytestmark = pytest.mark.integration

KERNEL_N = "6.1.0-56-amd64"
FAST = "debian12-kernel-n-fast"
WINDOWS = "timeouts: {ready: 150, stability: 5, install: 600, soak: 30}"  # soak: the shortest allowed
# Runs keep the product's one retry, so a testbed hiccup before the candidate is in is retried
# instead of failing a test about something else; twin-fails and fail-fast turn it off (the first
# ends infra_error on purpose, the second measures a cancel).


def _load(relative: str) -> ModuleType:
    path = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem + "_" + path.parent.name.replace("-", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sensor(out: Path, *arguments: str) -> Path:
    builder = _load("samples/linux-sensor/build_candidate.py")
    assert builder.main(["--out", str(out), "--kernel", KERNEL_N, "-q", *arguments]) == 0
    return out


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("incident-candidates")
    built = {
        "good": _sensor(root / "good", "--content", "good"),
        "zero-filled": _sensor(root / "zero-filled", "--content", "zero-filled"),
        # the 2023 incident: content with a feature of 1.1.0, read by the fleet's 1.0.0 too
        "new-content": _sensor(
            root / "new-content", "--content", "new", "--sensor-version", "1.1.0", "--sensor-version", "1.0.0"
        ),
        # one candidate with a sensor that validates its content and one that trusts it
        "variants": _sensor(
            root / "variants",
            "--content",
            "good",
            "--sensor-version",
            "1.1.0",
            "--sensor-version",
            "1.1.0-validating",
        ),
        "activity-malformed": _sensor(root / "activity-malformed", "--content", "activity-malformed"),
        # the July 2024 file, read by a sensor that stays off after 2 starts the machine died in
        "safe-mode": _sensor(root / "safe-mode", "--content", "zero-filled", "--safe-mode-after", "2"),
    }
    root.chmod(0o755)
    return built


@pytest.fixture(scope="module")
def dlp_product(settings: Settings) -> Path:
    """The sample DLP agent, registered as a co-installed product of this testbed."""
    builder = _load("samples/linux-dlp/build_product.py")
    out = settings.products_path / "dlp-agent"
    if out.exists():
        shutil.rmtree(out)
    assert builder.main(["--out", str(out), "--kernel", KERNEL_N, "-q"]) == 0
    return out


# Cells: both sensor builds meet the July 2024 file, side by side in one report (two minutes of a
# slot per passing cell under TCG); the trusting one also meets the truncations that crash it (a
# crash takes under a minute). Every generated variant meets the validating build in the sweep below.
CELL_VARIANTS = ["zero-filled"]
TRUSTED_ONLY_VARIANTS = ["truncated-header", "truncated-half"]


# A cell per variant costs two minutes of a slot under TCG, and the sweep has 15: every one of them
# meets the validating sensor in its zero-filled cell instead (the activity step of the "variants"
# run): the running sensor loads each in turn, as a content update reaches it, and the zero-filled
# one stays for the next boot to load.
SWEEP_SEED = 20240719
_SWEEP_PREAMBLE = """#!/bin/sh
# Every generated content variant, loaded in turn by the running sensor, each followed by its
# health check. Made by tests/integration/test_incidents.py from the candidate's content.
set -u
FW=/lib/firmware/testbed-sensor/channel.bin
failures=0
failed() { echo "sweep: $variant: FAILED: $*"; failures=$((failures + 1)); }
load() {
\tvariant=$1 want=$2
\tbase64 -d > "$FW.tmp" && mv "$FW.tmp" "$FW"
\tgot=$(sha256sum "$FW" | cut -d " " -f 1)
\t[ "$got" = "$want" ] || { failed "wrote $got"; return; }
\tmodprobe -r testbed_sensor && modprobe testbed_sensor || { failed "the sensor did not restart"; return; }
\thealth=$(sh /var/lib/testbed-sensor/healthcheck.sh 2>&1) || { failed "$health"; return; }
\techo "sweep: $variant $want: $health"
}
"""


def sweep_script(candidate_dir: Path, seed: int) -> tuple[str, dict[str, str]]:
    """The sweep as a POSIX sh script carrying every variant's bytes, and each variant's sha256."""
    candidate = load_candidate(candidate_dir)
    (content,) = candidate.content_files()
    variants = list(expand_variants([*SIMPLE_VARIANTS, *COUNT_VARIANTS], candidate.content_layout()))
    variants.remove("zero-filled")
    variants.append("zero-filled")  # last: it stays, and the next boot loads it
    digests, parts = {}, [_SWEEP_PREAMBLE]
    for variant in variants:
        data = candidate.content_bytes(content, variant, seed)
        digests[variant] = hashlib.sha256(data).hexdigest()
        encoded = base64.encodebytes(data).decode()
        parts.append(f"load {shlex.quote(variant)} {digests[variant]} <<'VARIANT'\n{encoded}VARIANT\n")
    parts.append('echo "sweep: $failures failed"\n[ "$failures" -eq 0 ]\n')
    return "".join(parts), digests


@pytest.fixture(scope="module")
def variant_sweep(candidates: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    script, digests = sweep_script(candidates["variants"], SWEEP_SEED)
    path = tmp_path_factory.mktemp("variant-sweep") / "sweep.sh"
    path.write_text(script)
    path.parent.chmod(0o755)
    return path, digests


@pytest.fixture(scope="module")
def incident_runs(
    start_batch: Callable[..., Batch],
    candidates: dict[str, Path],
    dlp_product: Path,
    variant_sweep: tuple[Path, dict],
) -> Batch:
    del dlp_product  # registered: the testbed finds it in its products directory
    activity = (REPO_ROOT / "samples" / "activity" / "linux-activity.sh").resolve()
    return start_batch(
        {
            # 2019: sensor + DLP agent; with a control twin for the failing cell
            "dlp": (
                f"name: dlp\nimages: [{FAST}]\ncoinstalled: [[], [dlp-agent]]\nreboots: 1\ncontrols: true\n"
                f"{WINDOWS}\n",
                candidates["good"],
            ),
            # 2023: new content reaches sensor N and N-1
            "sensor-n1": (
                f"name: sensor-n1\nimages: [{FAST}]\nreboots: 1\n{WINDOWS}\n",
                candidates["new-content"],
            ),
            # July 2024: generated content variants; the validating sensor survives every one: the
            # zero-filled file as its cell's content, then every generated variant, one after the
            # other, loaded by the running sensor (the activity step; the trusting sensor's cells
            # crash at install, before any activity)
            "variants": (
                f"name: variants\nimages: [{FAST}]\nreboots: 1\n{WINDOWS}\n"
                f"content_variants: [{', '.join(CELL_VARIANTS + TRUSTED_ONLY_VARIANTS)}]\n"
                f"variant_seed: {SWEEP_SEED}\nactivity: {{script: {variant_sweep[0]}}}\n"
                "exclude:\n"
                + "".join(
                    f"  - {{sensor_version: 1.1.0-validating, content_variant: {v}}}\n"
                    for v in TRUSTED_ONLY_VARIANTS
                ),
                candidates["variants"],
            ),
            # July 2024, second half: the bad rule only faults when its event happens
            # ... under the observe policy: the reset guest boots, becomes ready, and crashes again
            "activity": (
                f"name: activity\nimages: [{FAST}]\nreboots: 1\n{WINDOWS}\n"
                f"activity: {{script: {activity}}}\non_crash: observe\nboot_loop_after: 2\n",
                candidates["activity-malformed"],
            ),
            "no-activity": (
                f"name: no-activity\nimages: [{FAST}]\nreboots: 1\n{WINDOWS}\n",
                candidates["activity-malformed"],
            ),
            # an image that breaks on its second boot whatever is installed: the twin tells
            "twin-fails": (
                f"name: twin-fails\nimages: [broken-second-boot]\nreboots: 1\ncontrols: true\n"
                f"retries: 0\n{WINDOWS}\n",
                candidates["good"],
            ),
            # crashes counted, and a guest that comes back once its sensor gives up starting
            "observe": (
                f"name: observe\nimages: [{FAST}]\nreboots: 1\non_crash: observe\n"
                f"boot_loop_after: 3\n{WINDOWS}\n",
                candidates["safe-mode"],
            ),
            # fail-fast: the fast guest crashes at install while the full one still boots
            "fail-fast": (
                f"name: fail-fast\nimages: [{FAST}, debian12-kernel-n]\nreboots: 1\nfail_fast: true\n"
                "retries: 0\ntimeouts: {ready: 420, stability: 5, soak: 30}\n",
                candidates["zero-filled"],
            ),
        }
    )


def outcomes(batch: Batch, name: str) -> dict[str, CellOutcome]:
    return {cell.cell_id: cell.outcome for cell in batch.result(name).cells}


def test_the_dlp_agent_and_the_sensor_crash_only_together(incident_runs: Batch) -> None:
    result = incident_runs.result("dlp")
    assert outcomes(incident_runs, "dlp") == {
        FAST: CellOutcome.PASSED,  # the sensor alone
        f"{FAST}+dlp-agent": CellOutcome.CRASHED,  # the sensor with the DLP agent installed first
        f"{FAST}+dlp-agent~control": CellOutcome.PASSED,  # the DLP agent alone: the twin
    }
    crashed = next(cell for cell in result.cells if cell.cell_id == f"{FAST}+dlp-agent")
    assert crashed.crash is not None and crashed.crash["module"] in ("testbed_sensor", "testbed_dlp")
    assert crashed.reason.endswith("its control twin without the candidate passed")
    assert result.verdict is RunVerdict.FAILED
    assert [group["cells"] for group in result.as_dict()["groups"]] == [[f"{FAST}+dlp-agent"]]


def test_new_content_crashes_only_the_previous_sensor_release(incident_runs: Batch) -> None:
    result = incident_runs.result("sensor-n1")
    assert outcomes(incident_runs, "sensor-n1") == {
        f"{FAST}@1.0.0": CellOutcome.CRASHED,
        f"{FAST}@1.1.0": CellOutcome.PASSED,
    }
    crashed = next(cell for cell in result.cells if cell.cell_id == f"{FAST}@1.0.0")
    assert crashed.crash is not None and "stack-protector" in crashed.crash["title"]


def test_content_variants_crash_the_trusting_sensor_and_not_the_validating_one(incident_runs: Batch) -> None:
    result = incident_runs.result("variants")
    by_id = {cell.cell_id: cell for cell in result.cells}
    assert len(result.cells) == 2 * len(CELL_VARIANTS) + len(TRUSTED_ONLY_VARIANTS)
    for variant in CELL_VARIANTS:
        validated = by_id[f"{FAST}@1.1.0-validating~{variant}"]
        assert validated.outcome is CellOutcome.PASSED, (validated.cell_id, validated.reason)
    for variant in CELL_VARIANTS + TRUSTED_ONLY_VARIANTS:
        trusted = by_id[f"{FAST}@1.1.0~{variant}"]
        assert trusted.outcome is CellOutcome.CRASHED, (trusted.cell_id, trusted.reason)
    run = result.as_dict()
    digests = {cell["cell_id"]: cell.get("content_digests") for cell in run["cells"]}
    assert len({str(d) for d in digests.values()}) >= len(CELL_VARIANTS)  # each variant its own bytes


def test_the_validating_sensor_survives_every_generated_variant_and_boots_on_zero_filled_content(
    incident_runs: Batch, variant_sweep: tuple[Path, dict]
) -> None:
    cell = next(cell for cell in incident_runs.result("variants").cells if "validating" in cell.cell_id)
    assert cell.cell_id == f"{FAST}@1.1.0-validating~zero-filled"
    assert cell.outcome is CellOutcome.PASSED, cell.reason
    digests = variant_sweep[1]
    assert len(digests) == len(SIMPLE_VARIANTS) + 3 * len(COUNT_VARIANTS)  # the sample declares 3 counts
    runs = [
        [line for line in run if line.startswith("sweep:")]
        for run in activity_outputs(Path(cell.evidence_dir or ""))
    ]
    assert len(runs) == 2, runs  # after the install, and after the reboot
    for lines in runs:
        for variant, digest in digests.items():
            assert any(
                line.startswith(f"sweep: {variant} {digest}: testbed-sensor-health: ok") for line in lines
            ), (variant, lines)
        assert lines[-1] == "sweep: 0 failed"
    # the boot between the two sweeps loaded the zero-filled file the first one left
    console = (Path(cell.evidence_dir or "") / "console.log").read_text(errors="replace")
    assert "content rejected: bad magic 00000000" in console.split("sysrq: Resetting")[-1]


def test_the_activity_triggered_crash_is_caught_only_with_the_activity_step(incident_runs: Batch) -> None:
    assert outcomes(incident_runs, "no-activity") == {FAST: CellOutcome.PASSED}
    (cell,) = incident_runs.result("activity").cells
    assert cell.outcome is CellOutcome.BOOT_LOOP, cell.reason  # the observe policy counting crashes
    assert "2 crashes in 2 boots" in cell.reason
    assert cell.crash is not None and cell.crash["module"] == "testbed_sensor"
    # The activity runs only on a ready guest: the reset guest came back (libvirt once left it
    # 'paused' while it ran, and the cell waited for readiness until it was called hung).
    activities = [timing.phase for timing in cell.timings if "activity" in timing.phase]
    assert len(activities) == 2, [timing.phase for timing in cell.timings]


def test_a_failure_whose_control_twin_fails_too_is_the_images_and_the_run_inconclusive(
    incident_runs: Batch,
) -> None:
    result = incident_runs.result("twin-fails")
    by_id = {cell.cell_id: cell for cell in result.cells}
    original, twin = by_id["broken-second-boot"], by_id["broken-second-boot~control"]
    # Without its twin this would read as the candidate's crash: it came after the candidate's reboot.
    assert original.observed is CellOutcome.CRASHED or original.crash is not None, original.reason
    assert original.outcome is CellOutcome.INFRA_ERROR, original.reason
    assert "but its control twin without the candidate failed too" in original.reason
    assert "the image or the infrastructure is at fault, not the candidate" in original.reason
    assert twin.outcome is not CellOutcome.PASSED and twin.control_of == "broken-second-boot"
    assert result.verdict is RunVerdict.INCONCLUSIVE, result.summary


def test_the_observe_policy_sees_a_sensor_give_up_and_still_calls_the_cell_crashed(
    incident_runs: Batch,
) -> None:
    """The install crashes the guest, the reset guest crashes as the sensor starts at boot, and on
    the third boot the sensor stays off (safe mode): the machine is back, unprotected. (The
    activity run above counts crashes into a boot loop.)"""
    (cell,) = incident_runs.result("observe").cells
    assert cell.outcome is CellOutcome.CRASHED, cell.reason
    assert cell.reason.startswith("recovered after 2 crash(es), but degraded: "), cell.reason
    assert "testbed_sensor is in safe mode: its last 2 starts never finished" in cell.reason
    assert cell.crash is not None and cell.crash["module"] == "testbed_sensor", cell.crash
    waits = [timing.phase for timing in cell.timings if timing.phase.endswith("waiting for readiness")]
    assert waits[-2:] == [
        "boot 2/2 (after 1 crash): waiting for readiness",
        "boot 3 (after 2 crashes): waiting for readiness",
    ], waits


def test_fail_fast_cancels_the_rest_within_seconds(incident_runs: Batch) -> None:
    result = incident_runs.result("fail-fast")
    by_id = {cell.cell_id: cell for cell in result.cells}
    crashed, canceled = by_id[FAST], by_id["debian12-kernel-n"]
    assert crashed.outcome is CellOutcome.CRASHED
    assert canceled.outcome is CellOutcome.CANCELED
    assert canceled.reason == f"fail-fast: {FAST} ended crashed"
    # Whether it was running or still waiting for a slot (other tests hold them), it ended when
    # the crash was known, and never boots on. Loosely: the 2 s goal is measured in `make bench`.
    assert crashed.finished_at is not None and canceled.finished_at is not None
    assert 0 <= canceled.finished_at - crashed.finished_at < 10
    phases = [timing.phase for timing in canceled.timings]
    assert not any("soak" in phase or phase.startswith("boot 2/") for phase in phases), phases
