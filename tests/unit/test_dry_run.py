"""The explained dry run: a matrix with a Windows and a Linux cell gives, per cell, valid domain XML,
an ansible inventory (WinRM for Windows, SSH for Linux) and a playbook run plan — on a host
without KVM, where the Windows cell itself would be refused (exit 3, nothing started)."""

import json
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest
import yaml
from typer.testing import CliRunner

from api.cli.gate_command import explain_cells
from api.cli.main import app
from orchestrator.config import HostConfig, Settings
from orchestrator.core.verdict import EXIT_BAD_INPUT
from orchestrator.engine.gate import kvm_refusals, prepare_gate
from orchestrator.images.catalog import ImageCatalog, ImageRecord
from tests.unit.test_domain_xml import assert_valid
from tests.unit.windows.cells import CHANNEL, MSI, sha256, windows_record, write_candidate

pytestmark = pytest.mark.unit

LINUX_PACKAGE = b"linux sensor tarball\n"
MATRIX = """
name: both-families
images: [win11-24h2, debian12-kernel-n]
reboots: 1
timeouts: {ready: 900, stability: 60, install: 1200}
resources: {memory_mib: 4096, vcpus: 2}
"""


def linux_record(images_dir: Path) -> ImageRecord:
    directory = images_dir / "debian12-kernel-n-bbbbbbbbbbbb"
    directory.mkdir(parents=True)
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (directory / name).write_bytes(b"x")
    return ImageRecord(
        name="debian12-kernel-n",
        kind="debian",
        os_family="linux",
        os_version="debian-12",
        kernel="6.1.0-56-amd64",
        digest="b" * 64,
        directory=directory,
        disk=directory / "disk.qcow2",
        kernel_image=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        kernel_cmdline="root=/dev/vda console=ttyS0,115200 oops=panic panic=0",
        built_at=1795000000.0,
        disk_bytes=1,
    )


@pytest.fixture
def testbed(tmp_path):
    """Settings on a TCG host, a catalog with a Windows and a Linux image, a candidate for both."""
    settings = Settings(
        state_dir=tmp_path / "state", hosts=[HostConfig(name="local", uri="qemu:///system", accel="tcg")]
    )
    catalog = ImageCatalog(settings.images_dir)
    catalog.put(windows_record(settings.images_dir))
    catalog.put(linux_record(settings.images_dir))
    candidate = write_candidate(tmp_path / "candidate")
    (candidate / "sensor-linux.tar.gz").write_bytes(LINUX_PACKAGE)
    manifest = yaml.safe_load((candidate / "candidate.yaml").read_text())
    manifest["artifacts"].insert(
        1,
        {
            "name": "sensor-linux",
            "kind": "sensor_package",
            "os_family": "linux",
            "path": "sensor-linux.tar.gz",
            "sha256": sha256(LINUX_PACKAGE),
        },
    )
    (candidate / "candidate.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(MATRIX)
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(json.loads(settings.model_dump_json(include={"state_dir", "hosts"}))))
    return settings, matrix, candidate, config


@pytest.fixture
def explained(testbed, tmp_path):
    settings, matrix, candidate, _ = testbed
    out = tmp_path / "explained"
    cells = explain_cells(settings, prepare_gate(settings, matrix, candidate), out)
    return {cell["cell_id"]: cell for cell in cells}, out


def test_every_cell_is_explained_and_the_windows_one_is_marked_refused_here(explained):
    cells, out = explained
    assert set(cells) == {"win11-24h2", "debian12-kernel-n"}
    assert cells["win11-24h2"]["refused"].startswith(
        "refused on host local (qemu:///system): it offers no KVM"
    )
    assert (cells["win11-24h2"]["family"], cells["win11-24h2"]["domain_type"]) == ("windows", "kvm")
    assert (cells["debian12-kernel-n"]["family"], cells["debian12-kernel-n"]["domain_type"]) == (
        "linux",
        "qemu",
    )
    assert cells["debian12-kernel-n"]["refused"] == ""
    assert json.loads((out / "explain.json").read_text()) == [cells["win11-24h2"], cells["debian12-kernel-n"]]
    assert (out / "plan.yaml").read_text().startswith("matrix_name: both-families")


@pytest.mark.parametrize("cell_id", ["win11-24h2", "debian12-kernel-n"])
def test_the_domain_xml_is_valid_for_libvirt_and_defines_on_its_test_driver(explained, cell_id):
    cells, _ = explained
    xml = (Path(cells[cell_id]["directory"]) / "domain.xml").read_text()
    document = assert_valid("domain", xml)
    assert document.findtext("name") == cells[cell_id]["domain"] == f"tb-dry-run-{cell_id}"
    connection = libvirt.open("test:///default")
    try:
        domain = connection.defineXML(xml)
        domain.undefine()
    finally:
        connection.close()


def test_the_windows_cell_runs_its_playbook_over_winrm(explained):
    cells, _ = explained
    directory = Path(cells["win11-24h2"]["directory"])
    guest = yaml.safe_load((directory / "inventory.yml").read_text())["all"]["hosts"]["guest"]
    assert (guest["ansible_connection"], guest["ansible_port"], guest["ansible_winrm_transport"]) == (
        "winrm",
        5986,
        "ntlm",
    )
    assert guest["ansible_winrm_message_encryption"] == "always"
    assert guest["ansible_user"] == "testbed"
    (step,) = yaml.safe_load((directory / "playbooks.yml").read_text())
    assert step["step"] == "install candidate"
    assert step["playbook"].endswith("playbooks/windows/install_candidate.yml")
    artifacts = {artifact["name"]: artifact for artifact in step["extravars"]["testbed_artifacts"]}
    assert set(artifacts) == {"sensor-windows", "channel-291"}
    assert artifacts["sensor-windows"]["sha256"] == sha256(MSI)
    staged = Path(artifacts["channel-291"]["src"])
    assert staged.read_bytes() == CHANNEL and artifacts["channel-291"]["sha256"] == sha256(CHANNEL)
    assert step["extravars"]["testbed_expected_return_codes"] == [0, 3010]


def test_the_linux_cell_runs_its_playbook_over_ssh(explained):
    cells, _ = explained
    directory = Path(cells["debian12-kernel-n"]["directory"])
    guest = yaml.safe_load((directory / "inventory.yml").read_text())["all"]["hosts"]["guest"]
    assert guest["ansible_user"] == "root" and "ansible_ssh_private_key_file" in guest
    assert "ansible_connection" not in guest  # ssh, ansible's default
    (step,) = yaml.safe_load((directory / "playbooks.yml").read_text())
    assert step["playbook"].endswith("playbooks/linux/install_candidate.yml")
    assert [a["name"] for a in step["extravars"]["testbed_artifacts"]] == ["sensor-linux", "channel-291"]
    assert Path(step["extravars"]["testbed_bundle"]).is_file()


@pytest.mark.parametrize("cell_id", ["win11-24h2", "debian12-kernel-n"])
def test_ansible_reads_each_inventory(explained, cell_id, tmp_path):
    cells, _ = explained
    inventory = Path(cells[cell_id]["directory"]) / "inventory.yml"
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        env={"ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "guest" in json.loads(listed.stdout)["_meta"]["hostvars"]


def test_the_cli_explains_without_starting_anything(testbed, tmp_path):
    settings, matrix, candidate, config = testbed
    out = tmp_path / "cli-explained"
    result = CliRunner().invoke(
        app,
        [
            "--config",
            str(config),
            "gate",
            "--matrix",
            str(matrix),
            "--candidate",
            str(candidate),
            "--dry-run",
            "--explain",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [cell["cell_id"] for cell in document["cells"]] == ["win11-24h2", "debian12-kernel-n"]
    assert (out / "cells" / "win11-24h2" / "domain.xml").is_file()
    assert not settings.runs_dir.exists()


# -- Windows on a host without KVM ------------------------------------------------------------------


def test_a_windows_cell_on_a_tcg_host_is_refused_before_anything_starts(testbed):
    settings, matrix, candidate, config = testbed
    result = CliRunner().invoke(
        app, ["--config", str(config), "gate", "--matrix", str(matrix), "--candidate", str(candidate)]
    )
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    message = " ".join(result.output.split())
    assert "image win11-24h2: windows guests need a KVM host" in message
    assert "local (qemu:///system)" in message
    assert not settings.runs_dir.exists()


def test_kvm_refusals_name_each_image_once_and_only_without_any_kvm_host(testbed):
    settings, matrix, candidate, _ = testbed
    plan = prepare_gate(settings, matrix, candidate).plan
    uris = {"a": "qemu:///system", "b": "qemu+ssh://rack2/system"}
    assert kvm_refusals(plan, {"a": "qemu", "b": "kvm"}, uris) == []
    assert kvm_refusals(plan, {"a": "qemu", "b": "qemu"}, uris) == [
        "image win11-24h2: windows guests need a KVM host, and the configured hosts offer only emulation "
        "(TCG): a (qemu:///system), b (qemu+ssh://rack2/system)"
    ]


def test_a_step_that_cannot_run_is_explained_with_the_reason(testbed, tmp_path):
    settings, matrix, candidate, _ = testbed
    prepared = prepare_gate(settings, matrix, candidate)
    (candidate / "content" / "C-00000291.sys").write_bytes(b"changed after the plan pinned it")
    cells = explain_cells(settings, prepared, tmp_path / "out")
    windows = Path(cells[0]["directory"])
    (step,) = yaml.safe_load((windows / "playbooks.yml").read_text())
    assert step["step"] == "install candidate"
    assert step["error"] == "InfrastructureError: channel-291: the as-shipped variant is not what was planned"
    assert (windows / "domain.xml").is_file() and not (windows / "inventory.yml").exists()
