"""LinuxFamily's host files: every domain on a local host boots its own copy of the image's kernel
and initrd (libvirt relabels a domain's kernel and initrd; two domains sharing them race), removed
with the domain; a remote host's domains boot the image's files as they are."""

from pathlib import Path

import pytest
from lxml import etree

from orchestrator.adapters.domain_xml import domain_name, private_boot_paths
from orchestrator.config import HostConfig
from orchestrator.core.plan import ImageFacts
from orchestrator.guests.channel import DomainFiles, LeavesHostFiles, StagesHostFiles
from orchestrator.guests.linux.family import LinuxFamily
from tests.unit.conftest import build_plan
from tests.unit.test_dry_run import linux_record
from tests.unit.windows.cells import run_context, write_candidate

pytestmark = pytest.mark.unit


class _Host:
    def __init__(self, uri: str) -> None:
        self.config = HostConfig(name="h", uri=uri)


def _cell(tmp_path: Path, uri: str):
    record = linux_record(tmp_path / "images")
    record.kernel_image.write_bytes(b"kernel bytes")
    record.initrd.write_bytes(b"initrd bytes")
    context = run_context(tmp_path, record, write_candidate(tmp_path / "candidate"))
    image = ImageFacts(
        name=record.name,
        os_family="linux",
        os_version=record.os_version,
        kernel=record.kernel,
        digest=record.digest,
    )
    plan = build_plan(cell_id=record.name, image=image)
    domain = domain_name(context.run_id, plan.cell_id)
    pool = tmp_path / "pool"
    pool.mkdir()
    files = DomainFiles(context.cell_dir(plan.cell_id) / "console.log", pool / f"{domain}.qcow2")
    return LinuxFamily(_Host(uri), context), plan, domain, files, record  # type: ignore[arg-type]


def test_a_local_domain_boots_its_own_copy_of_kernel_and_initrd(tmp_path):
    family, plan, domain, files, _ = _cell(tmp_path, "qemu:///system")
    assert isinstance(family, StagesHostFiles) and isinstance(family, LeavesHostFiles)

    family.stage_host_files(plan, files)

    kernel, initrd = private_boot_paths(files.overlay)
    assert (kernel.read_bytes(), initrd.read_bytes()) == (b"kernel bytes", b"initrd bytes")
    assert kernel.parent == files.overlay.parent and kernel.name.startswith(domain)
    document = etree.fromstring(family.domain_xml(plan, domain, files, "qemu").encode())
    assert document.findtext("os/kernel") == str(kernel)
    assert document.findtext("os/initrd") == str(initrd)
    assert family.host_leftovers(files) == (kernel, initrd)  # removed with the domain


def test_two_domains_never_share_boot_files(tmp_path):
    _, _, domain, files, _ = _cell(tmp_path, "qemu:///system")
    other = DomainFiles(files.console_log, files.overlay.with_name(f"{domain}-a2.qcow2"))
    assert set(private_boot_paths(files.overlay)).isdisjoint(private_boot_paths(other.overlay))


def test_a_remote_domain_boots_the_images_files(tmp_path):
    family, plan, domain, files, record = _cell(tmp_path, "qemu+ssh://kvm-1/system")
    document = etree.fromstring(family.domain_xml(plan, domain, files, "kvm").encode())
    assert document.findtext("os/kernel") == str(record.kernel_image)
    assert document.findtext("os/initrd") == str(record.initrd)


def test_an_emulated_guest_reports_rcu_stalls_after_a_minute_and_a_kvm_guest_as_the_kernel_does(tmp_path):
    family, plan, domain, files, record = _cell(tmp_path, "qemu:///system")
    tcg = etree.fromstring(family.domain_xml(plan, domain, files, "qemu").encode()).findtext("os/cmdline")
    kvm = etree.fromstring(family.domain_xml(plan, domain, files, "kvm").encode()).findtext("os/cmdline")
    assert tcg == f"{record.kernel_cmdline} rcupdate.rcu_cpu_stall_timeout=60"
    assert kvm == record.kernel_cmdline
