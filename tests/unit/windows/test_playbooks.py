"""Every playbook parses for ansible; the Windows ones stage, check digests, install, collect."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from orchestrator.guests.windows.playbook_vars import (
    StagedArtifact,
    candidate_install_vars,
    evidence_vars,
    staged_path,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted((REPO / "playbooks").rglob("*.yml"))
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# Where ansible.windows may be installed: ansible's own default, and Debian's `ansible` package.
COLLECTION_ROOTS = [
    Path.home() / ".ansible" / "collections",
    Path("/usr/share/ansible/collections"),
    Path("/usr/lib/python3/dist-packages"),
]


def windows_collection_root() -> Path | None:
    configured = [Path(p) for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(":") if p]
    for root in configured + COLLECTION_ROOTS:
        if (root / "ansible_collections" / "ansible" / "windows" / "MANIFEST.json").is_file():
            return root
    return None


def test_there_are_playbooks_for_both_families():
    names = {path.relative_to(REPO / "playbooks").as_posix() for path in PLAYBOOKS}
    assert {"linux/install_candidate.yml", "windows/install_candidate.yml"} <= names
    assert {"windows/install_product.yml", "windows/collect_evidence.yml"} <= names


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_syntax_check(playbook, tmp_path):
    environment = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_HOME": str(tmp_path)}
    if "windows" in playbook.parts:
        root = windows_collection_root()
        if root is None:
            pytest.skip(
                "the ansible.windows collection is not installed: install Debian's `ansible` package "
                "(or the `ansible` PyPI distribution) to check the Windows playbooks"
            )
        environment["ANSIBLE_COLLECTIONS_PATH"] = str(root)
    checked = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "--syntax-check", "-i", "localhost,", str(playbook)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def tasks(name: str) -> list[dict]:
    (play,) = yaml.safe_load((REPO / "playbooks" / "windows" / name).read_text())
    return play["tasks"]


@pytest.mark.parametrize(
    ("name", "prefixes"),
    [
        ("install_candidate.yml", ("testbed: ", "candidate: ")),
        ("install_product.yml", ("product: ",)),
        ("collect_evidence.yml", ("testbed: ",)),
    ],
)
def test_every_task_says_whose_fault_its_failure_is(name, prefixes):
    assert all(task["name"].startswith(prefixes) for task in tasks(name))


def test_the_candidate_is_installed_only_after_its_digests_are_checked():
    steps = tasks("install_candidate.yml")
    names = [task["name"] for task in steps]
    install = next(index for index, task in enumerate(steps) if "ansible.windows.win_package" in task)
    digest_check = next(index for index, name in enumerate(names) if "refuse any artifact" in name)
    assert digest_check < install
    assert names[install].startswith("candidate: ")
    assert (
        steps[install]["ansible.windows.win_package"]["expected_return_code"]
        == "{{ testbed_expected_return_codes }}"
    )
    stat = next(task for task in steps if "ansible.windows.win_stat" in task)["ansible.windows.win_stat"]
    assert stat["checksum_algorithm"] == "sha256"


# -- the variables the testbed passes ---------------------------------------------------------------

SENSOR = StagedArtifact("sensor", "sensor_package", Path("/srv/candidates/abc/TestbedSensor.msi"), "a" * 64)
CONTENT = StagedArtifact("channel-291", "content", Path("/srv/candidates/abc/C-00000291.sys"), "b" * 64)


def test_candidate_install_vars():
    variables = candidate_install_vars([SENSOR, CONTENT], SENSOR, [f"CONTENT={staged_path(CONTENT)}"])
    assert variables == {
        "testbed_stage_dir": "C:\\testbed\\stage",
        "testbed_artifacts": [
            {
                "name": "sensor",
                "kind": "sensor_package",
                "file": "TestbedSensor.msi",
                "sha256": "a" * 64,
                "src": "/srv/candidates/abc/TestbedSensor.msi",
            },
            {
                "name": "channel-291",
                "kind": "content",
                "file": "C-00000291.sys",
                "sha256": "b" * 64,
                "src": "/srv/candidates/abc/C-00000291.sys",
            },
        ],
        "testbed_sensor_package": "TestbedSensor.msi",
        "testbed_installer_args": ["CONTENT=C:\\testbed\\stage\\C-00000291.sys"],
        "testbed_product_id": "",
        "testbed_expected_return_codes": [0, 3010],
    }


@pytest.mark.parametrize(
    ("artifacts", "package", "message"),
    [
        ([SENSOR, CONTENT], CONTENT, "an .msi or an .exe"),
        ([CONTENT], SENSOR, "not among the staged artifacts"),
        (
            [SENSOR, StagedArtifact("x", "content", Path("/a/testbedsensor.MSI"), "c" * 64)],
            SENSOR,
            "share the file",
        ),
        ([StagedArtifact("s", "sensor_package", Path("/a/s.msi"), "A" * 64)], None, "lower-case hex"),
        ([StagedArtifact("s", "sensor_package", Path("/a/s:1.msi"), "a" * 64)], None, "no file name"),
    ],
)
def test_refused_install_vars(artifacts, package, message):
    with pytest.raises(ValueError, match=message):
        candidate_install_vars(artifacts, package or artifacts[0])


def test_evidence_vars():
    variables = evidence_vars(datetime(2026, 11, 25, 17, 0, 0, 250000, tzinfo=UTC), Path("/runs/r/cells/c"))
    assert variables["testbed_run_started"] == "2026-11-25T17:00:00.250Z"
    assert (
        variables["testbed_run_started_epoch"]
        == datetime(2026, 11, 25, 17, 0, 0, 250000, tzinfo=UTC).timestamp()
    )
    assert variables["testbed_guest_evidence_dir"] == "C:\\testbed\\evidence"
