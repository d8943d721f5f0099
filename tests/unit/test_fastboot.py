"""Fast-boot images: the module closure a trimmed tree keeps, in the order insmod needs."""

import gzip

import pytest

from orchestrator.errors import InfrastructureError
from orchestrator.images.fastboot_builder import ROOT_MODULES, closure, module_dependencies, module_name
from orchestrator.images.initramfs_builder import initramfs_bytes

pytestmark = pytest.mark.unit

VIRTIO = "kernel/drivers/virtio"
MODULES_DEP = "\n".join(
    [
        "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko",
        "kernel/fs/jbd2/jbd2.ko:",
        "kernel/fs/mbcache.ko:",
        "kernel/lib/crc16.ko:",
        "kernel/crypto/crc32c_generic.ko:",
        f"{VIRTIO}/virtio.ko:",
        f"{VIRTIO}/virtio_ring.ko:",
        f"{VIRTIO}/virtio_pci_legacy_dev.ko:",
        f"{VIRTIO}/virtio_pci_modern_dev.ko:",
        f"{VIRTIO}/virtio_pci.ko: {VIRTIO}/virtio_pci_legacy_dev.ko {VIRTIO}/virtio_pci_modern_dev.ko "
        f"{VIRTIO}/virtio_ring.ko {VIRTIO}/virtio.ko",
        f"kernel/drivers/block/virtio_blk.ko: {VIRTIO}/virtio_ring.ko {VIRTIO}/virtio.ko",
        "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko: kernel/drivers/misc/pvpanic/pvpanic.ko",
        "kernel/drivers/misc/pvpanic/pvpanic.ko:",
        "kernel/sound/core/snd.ko:",
    ]
)


def test_the_closure_puts_dependencies_first_and_leaves_the_rest_out():
    graph = module_dependencies(MODULES_DEP)
    order = closure(graph, ROOT_MODULES)
    names = [module_name(path) for path in order]
    assert "snd" not in names and "pvpanic" not in names
    for module, needs in (
        ("ext4", "jbd2"),
        ("ext4", "crc16"),
        ("virtio_pci", "virtio_ring"),
        ("virtio_blk", "virtio"),
    ):
        assert names.index(needs) < names.index(module)
    assert len(names) == len(set(names))  # each module once, however many need it


def test_module_names_ignore_dashes_and_compression():
    assert module_name("kernel/drivers/misc/pvpanic/pvpanic-mmio.ko") == "pvpanic_mmio"
    assert module_name("kernel/crypto/crc32c_generic.ko.xz") == "crc32c_generic"
    graph = module_dependencies(MODULES_DEP)
    assert [module_name(p) for p in closure(graph, ["pvpanic-mmio"])] == ["pvpanic", "pvpanic_mmio"]


def test_a_module_the_kernel_lacks_is_named():
    with pytest.raises(InfrastructureError) as caught:
        closure(module_dependencies(MODULES_DEP), ["virtio_pci", "nosuchthing"])
    assert "nosuchthing" in str(caught.value)


def test_the_initramfs_carries_its_modules_under_their_directories():
    archive = gzip.decompress(initramfs_bytes("#!/bin/sh\n", b"busybox", (("lib/modules/ext4.ko", b"elf"),)))
    for name in (
        b"lib\x00",
        b"lib/modules\x00",
        b"lib/modules/ext4.ko\x00",
        b"bin/switch_root\x00",
        b"bin/insmod\x00",
    ):
        assert name in archive
    assert archive.index(b"lib/modules\x00") < archive.index(b"lib/modules/ext4.ko\x00")
