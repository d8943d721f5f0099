"""The ``testbed`` command as CI and QA engineers call it: exit codes, messages, JSON, JUnit."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.images.catalog import ImageRecord
from tests.integration.conftest import find_leftovers

pytestmark = pytest.mark.integration

TESTBED = str(Path(sys.executable).parent / "testbed")


GATE_TIMEOUT_S = 2400  # a gate may wait long for a slot while other workers' cells run; only a hang gets here


def testbed(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TESTBED, *arguments], capture_output=True, text=True, timeout=GATE_TIMEOUT_S, check=False, env=env
    )


@pytest.fixture
def matrix_file(tmp_path: Path, images: dict[str, ImageRecord]) -> Path:
    del images
    path = tmp_path / "matrix.yaml"
    path.write_text("name: cli\nimages: [debian12-kernel-n]\n")
    return path


@pytest.mark.parametrize(
    ("matrix_text", "expected"),
    [
        ("name: x\nimages: [debian12-kernel-n\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: x\nimages: [no-such-image]\n", "images[0]: unknown image 'no-such-image'"),
        (
            "name: x\nimages: [debian12-kernel-n]\nreboots: 0\n",
            "reboots: Input should be greater than or equal to 1",
        ),
        (
            "name: x\nimages: [debian12-kernel-n]\ntimeouts: {ready: .inf}\n",
            "timeouts.ready: Input should be a finite number",
        ),
        ("name: x\nimages: [debian12-kernel-n]\nreboot: 2\n", "reboot: Extra inputs are not permitted"),
        (
            "name: x\nimages: [debian12-kernel-n]\ncoinstalled: [[dlp]]\n",
            "coinstalled[0][0]: unknown product 'dlp'",
        ),
    ],
)
def test_bad_matrix_exits_3_naming_the_field_and_starts_nothing(
    tmp_path: Path,
    settings: Settings,
    images: dict[str, ImageRecord],
    sample_candidates: dict[str, Path],
    matrix_text: str,
    expected: str,
) -> None:
    del images
    matrix = tmp_path / "bad.yaml"
    matrix.write_text(matrix_text)
    # A state directory of its own (the images shared): other workers start runs meanwhile.
    state = tmp_path / "state"
    state.mkdir()
    (state / "images").symlink_to(settings.images_dir)
    environment = {**os.environ, "TESTBED_STATE_DIR": str(state)}

    completed = testbed(
        "gate", "--matrix", str(matrix), "--candidate", str(sample_candidates["good"]), env=environment
    )

    assert completed.returncode == 3, completed.stderr
    assert expected in " ".join(completed.stderr.split()), completed.stderr
    runs = state / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing was started, not even a run directory


def test_candidate_whose_file_changed_after_pinning_exits_3(
    tmp_path: Path, matrix_file: Path, sample_candidates: dict[str, Path]
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(sample_candidates["good"], tampered)
    content = next((tampered / "content").iterdir())
    content.write_bytes(content.read_bytes()[:-1] + b"\x00")

    completed = testbed("gate", "--matrix", str(matrix_file), "--candidate", str(tampered))

    assert completed.returncode == 3
    message = " ".join(completed.stderr.split())
    assert "artifacts[1].sha256" in message and "the manifest pins" in message


def test_missing_candidate_file_exits_3(
    tmp_path: Path, matrix_file: Path, sample_candidates: dict[str, Path]
) -> None:
    incomplete = tmp_path / "incomplete"
    shutil.copytree(sample_candidates["good"], incomplete)
    next(incomplete.glob("*.tar.gz")).unlink()

    completed = testbed("gate", "--matrix", str(matrix_file), "--candidate", str(incomplete))

    assert completed.returncode == 3
    assert "artifacts[0].path: file not found" in " ".join(completed.stderr.split())


def test_dry_run_prints_the_validated_plan(matrix_file: Path, sample_candidates: dict[str, Path]) -> None:
    completed = testbed(
        "gate",
        "--matrix",
        str(matrix_file),
        "--candidate",
        str(sample_candidates["good"]),
        "--dry-run",
        "--json",
    )

    assert completed.returncode == 0, completed.stderr
    plan = json.loads(completed.stdout)["plan"]  # beside it, "cells" only with --explain
    assert [cell["cell_id"] for cell in plan["cells"]] == ["debian12-kernel-n"]
    assert plan["cells"][0]["steps"] == [{"kind": "candidate", "name": "candidate"}]


def test_an_image_whose_first_boot_fails_is_infra_error_exit_2_not_1(
    tmp_path: Path, settings: Settings, images: dict[str, ImageRecord], sample_candidates: dict[str, Path]
) -> None:
    """Boot 0 is the baseline: nothing of the candidate is in the guest yet, so a failure there is
    the image's (retried once on a fresh clone), and the run is inconclusive, never failed."""
    del images
    matrix = tmp_path / "broken.yaml"
    matrix.write_text("name: cli-broken\nimages: [broken-boot]\ntimeouts: {ready: 30, stability: 5}\n")
    junit = tmp_path / "report.xml"

    completed = testbed(
        "gate",
        "--matrix",
        str(matrix),
        "--candidate",
        str(sample_candidates["good"]),
        "--json",
        "--junit",
        str(junit),
    )

    assert completed.returncode == 2, completed.stderr
    result = json.loads(completed.stdout)
    assert result["verdict"] == "inconclusive"
    (cell,) = result["cells"]
    assert cell["outcome"] == "infra_error"
    assert cell["reason"].startswith("before the candidate was installed")
    assert (cell["attempt"], [a["outcome"] for a in cell["earlier_attempts"]]) == (2, ["infra_error"])
    suite = ET.parse(junit).getroot()
    assert (suite.get("failures"), suite.get("errors")) == ("0", "1")
    assert find_leftovers(settings, result["run_id"]) == ([], [])


def test_a_control_image_that_hangs_as_declared_counts_as_a_pass(
    tmp_path: Path, settings: Settings, images: dict[str, ImageRecord], sample_candidates: dict[str, Path]
) -> None:
    del images
    matrix = tmp_path / "hang.yaml"
    matrix.write_text("name: cli-hang\nimages: [control-hang]\ntimeouts: {ready: 20, stability: 5}\n")

    completed = testbed(
        "gate", "--matrix", str(matrix), "--candidate", str(sample_candidates["good"]), "--json"
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    (cell,) = result["cells"]
    assert (cell["observed"], cell["expected_outcome"], cell["attempt"]) == ("hung", "hung", 1)
    assert result["verdict"] == "passed"
    assert find_leftovers(settings, result["run_id"]) == ([], [])


def test_sigterm_cancels_the_run_and_still_cleans_up(
    tmp_path: Path, settings: Settings, images: dict[str, ImageRecord], sample_candidates: dict[str, Path]
) -> None:
    del images
    matrix = tmp_path / "hang.yaml"
    matrix.write_text("name: cli-cancel\nimages: [control-hang]\ntimeouts: {ready: 600}\n")
    process = subprocess.Popen(
        [TESTBED, "gate", "--matrix", str(matrix), "--candidate", str(sample_candidates["good"]), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    progress = []
    for line in process.stderr:  # progress lines go to stderr with --json
        progress.append(line)
        if "booting" in line:
            break
    process.terminate()
    try:
        stdout, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # never leave a gate running behind the suite
            process.kill()
            process.communicate()

    assert process.returncode == 2, "".join(progress)  # canceled: no answer either way
    result = json.loads(stdout)
    assert result["verdict"] == "inconclusive"
    (cell,) = result["cells"]
    assert cell["outcome"] == "canceled"
    assert "interrupted" in cell["reason"]
    assert find_leftovers(settings, result["run_id"]) == ([], [])
