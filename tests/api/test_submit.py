"""``testbed submit`` as a CI job runs it: the real command against the service, its exit codes
(0 passed, 1 failed, 2 inconclusive or unreachable, 3 bad input) and its JUnit report."""

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.api.bundles import candidate_files
from tests.api.conftest import TESTBED, free_port
from tests.api.runs_helpers import MIXED, PASSING
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.api


@pytest.fixture
def candidate(tmp_path) -> Path:
    directory = tmp_path / "candidate"
    for name, data in candidate_files("7.3.0-submit").items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def submit(server: str, token: str, candidate: Path, matrix_text: str, tmp_path: Path, *extra: str):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(matrix_text)
    return subprocess.run(
        [
            TESTBED,
            "submit",
            "--server",
            server,
            "--token",
            token,
            "--candidate",
            str(candidate),
            "--matrix",
            str(matrix),
            *extra,
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_a_passing_candidate_exits_0_with_a_clean_junit_report(service, candidate, tmp_path):
    junit = tmp_path / "report.xml"

    done = submit(
        service.base_url,
        service.tokens["submitter"],
        candidate,
        PASSING,
        tmp_path,
        "--wait",
        "--junit",
        str(junit),
    )

    assert done.returncode == 0, done.stderr
    assert "verdict: passed" in done.stderr
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    assert suite.find("testcase").get("name") == "sim-linux"


def test_a_crashing_candidate_exits_1_and_the_junit_names_the_crash(service, candidate, tmp_path):
    junit = tmp_path / "report.xml"

    done = submit(
        service.base_url,
        service.tokens["submitter"],
        candidate,
        MIXED,
        tmp_path,
        "--wait",
        "--junit",
        str(junit),
    )

    assert done.returncode == 1, done.stderr
    assert "sim-linux-crash" in done.stderr and "-> crashed" in done.stderr  # progress lines
    suite = ET.parse(junit).getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"sim-linux", "sim-linux-crash"}
    failure = cases["sim-linux-crash"].find("failure")
    assert (
        failure.get("message")
        == "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
    )
    assert failure.get("type") == "crashed"
    assert f"{service.base_url}/runs/" in failure.text  # where a person sees the evidence
    assert cases["sim-linux"].find("failure") is None


def test_json_output_is_the_runs_result(service, candidate, tmp_path):
    done = submit(
        service.base_url, service.tokens["submitter"], candidate, PASSING, tmp_path, "--wait", "--json"
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "passed"
    assert [cell["outcome"] for cell in result["cells"]] == ["passed"]


def test_without_wait_it_exits_0_once_the_run_is_accepted(service, candidate, tmp_path, viewer):
    done = submit(service.base_url, service.tokens["submitter"], candidate, PASSING, tmp_path, "--json")

    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert viewer.get(f"/api/v1/runs/{run['id']}").status_code == 200
    assert f"{service.base_url}/runs/{run['id']}" in done.stderr


def test_a_matrix_the_server_refuses_exits_3_naming_the_field(service, candidate, tmp_path):
    done = submit(
        service.base_url, service.tokens["submitter"], candidate, "name: m\nimages: []\n", tmp_path, "--wait"
    )

    assert done.returncode == 3
    assert "422" in done.stderr and "images" in done.stderr


def test_a_viewer_token_exits_3(service, candidate, tmp_path):
    done = submit(service.base_url, service.tokens["viewer"], candidate, PASSING, tmp_path, "--wait")

    assert done.returncode == 3
    assert "403" in done.stderr


def test_a_broken_candidate_exits_3_before_anything_is_sent(service, candidate, tmp_path):
    (candidate / "content" / "C-291.bin").write_bytes(b"tampered after the manifest was written")

    done = submit(service.base_url, service.tokens["submitter"], candidate, PASSING, tmp_path, "--wait")

    assert done.returncode == 3
    assert "sha256" in done.stderr


def test_an_unreachable_server_exits_2(candidate, tmp_path):
    done = submit(f"http://127.0.0.1:{free_port()}", "tbt_x", candidate, PASSING, tmp_path, "--wait")

    assert done.returncode == 2
    assert "cannot be reached" in done.stderr
