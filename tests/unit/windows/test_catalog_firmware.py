"""Image records of both boot kinds: direct kernel boot (Linux) and UEFI firmware (Windows), and
catalogs written before the firmware fields existed."""

import json

import pytest
from pydantic import ValidationError

from orchestrator.errors import ConfigurationError
from orchestrator.images.catalog import ImageCatalog, ImageRecord
from tests.unit.windows.cells import windows_record

pytestmark = pytest.mark.unit


def linux_entry(directory) -> dict:
    """A catalog entry exactly as catalogs were written before the firmware fields."""
    return {
        "name": "debian12-kernel-n",
        "kind": "debian",
        "os_family": "linux",
        "os_version": "debian-12",
        "kernel": "6.1.0-56-amd64",
        "digest": "b" * 64,
        "directory": str(directory),
        "disk": str(directory / "disk.qcow2"),
        "kernel_image": str(directory / "vmlinuz"),
        "initrd": str(directory / "initrd.img"),
        "kernel_cmdline": "root=/dev/vda console=ttyS0,115200",
        "built_at": 1795000000.0,
        "disk_bytes": 4,
        "expected_outcome": None,
    }


@pytest.fixture
def linux_dir(tmp_path):
    directory = tmp_path / "debian12-kernel-n-bbbbbbbbbbbb"
    directory.mkdir()
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (directory / name).write_bytes(b"x")
    return directory


def test_an_old_catalog_loads_and_keeps_its_keys(tmp_path, linux_dir):
    (tmp_path / "catalog.json").write_text(json.dumps({"debian12-kernel-n": linux_entry(linux_dir)}))
    catalog = ImageCatalog(tmp_path)
    record = catalog.usable()["debian12-kernel-n"]
    assert record.direct_boot
    assert (record.kernel_image, record.initrd) == (linux_dir / "vmlinuz", linux_dir / "initrd.img")
    assert (record.secure_boot, record.tpm, record.nvram_template) == (False, False, None)
    catalog.put(record)
    written = json.loads((tmp_path / "catalog.json").read_text())["debian12-kernel-n"]
    assert written["kernel_image"] == str(linux_dir / "vmlinuz") and written["initrd"] == str(
        linux_dir / "initrd.img"
    )
    assert "boot_kernel" not in written


def test_a_windows_record_has_no_kernel_and_round_trips(tmp_path):
    record = windows_record(tmp_path)
    assert not record.direct_boot
    assert record.boot_files() == (record.disk, record.nvram_template)
    with pytest.raises(
        ConfigurationError, match="win11-24h2 boots from UEFI firmware: it has no kernel_image"
    ):
        _ = record.kernel_image
    catalog = ImageCatalog(tmp_path)
    catalog.put(record)
    assert catalog.usable() == {"win11-24h2": record}
    written = json.loads((tmp_path / "catalog.json").read_text())["win11-24h2"]
    assert (written["kernel_image"], written["secure_boot"], written["tpm"]) == (None, True, True)


@pytest.mark.parametrize("missing", ["disk.qcow2", "efivars.fd"])
def test_a_windows_record_is_unusable_without_its_disk_or_variable_store(tmp_path, missing):
    record = windows_record(tmp_path)
    (record.directory / missing).unlink()
    assert not record.files_present()


@pytest.mark.parametrize("missing", ["disk.qcow2", "vmlinuz", "initrd.img"])
def test_a_linux_record_is_unusable_without_any_of_its_files(linux_dir, missing):
    record = ImageRecord.model_validate(linux_entry(linux_dir))
    assert record.files_present()
    (linux_dir / missing).unlink()
    assert not record.files_present()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"initrd": None}, "kernel_image and initrd go together"),
        ({"nvram_template": "/x/efivars.fd"}, "a direct kernel boot has no UEFI nvram_template"),
    ],
)
def test_a_record_boots_one_way(linux_dir, changes, problem):
    with pytest.raises(ValidationError, match=problem):
        ImageRecord.model_validate({**linux_entry(linux_dir), **changes})
