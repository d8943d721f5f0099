"""Busybox control guests: a kernel from a Debian image plus an initramfs whose /init is a script.

They boot in seconds and behave exactly as scripted (never ready, reset forever, ...), which is
what a control cell and the testbed's own tests need.
"""

import gzip
import io
import shutil
from pathlib import Path

from orchestrator.adapters.process import run_tool
from orchestrator.errors import InfrastructureError
from orchestrator.images.catalog import ImageRecord
from orchestrator.images.definition import InitramfsImage

BUSYBOX = Path("/bin/busybox")
_APPLETS = (
    "sh", "sleep", "echo", "cat", "mount", "umount", "reboot", "poweroff", "dmesg", "ls", "mkdir",
    "insmod", "switch_root", "test", "[",
)  # fmt: skip


def _cpio_entry(name: str, mode: int, data: bytes = b"", inode: int = 1) -> bytes:
    """One record of the newc cpio format the kernel unpacks (fixed times: reproducible)."""
    encoded = name.encode() + b"\0"
    fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
    record = header + encoded
    record += b"\0" * (-len(record) % 4)
    record += data + b"\0" * (-len(data) % 4)
    return record


def initramfs_bytes(init_script: str, busybox: bytes, files: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """A gzip-compressed newc archive with busybox, its applets as links, /init, and ``files``
    (path, bytes) in directories of their own (e.g. kernel modules to load before the root)."""
    entries = [
        ("bin", 0o040755, b""),
        ("dev", 0o040755, b""),
        ("proc", 0o040755, b""),
        ("sys", 0o040755, b""),
        ("root", 0o040755, b""),
    ]
    entries.append(("bin/busybox", 0o100755, busybox))
    entries += [(f"bin/{applet}", 0o120777, b"busybox") for applet in _APPLETS]
    directories = sorted({str(parent) for name, _ in files for parent in Path(name).parents} - {"."})
    entries += [(directory, 0o040755, b"") for directory in directories]
    entries += [(name, 0o100644, data) for name, data in files]
    entries.append(("init", 0o100755, init_script.encode()))
    archive = io.BytesIO()
    for inode, (name, mode, data) in enumerate(entries, start=1):
        archive.write(_cpio_entry(name, mode, data, inode))
    archive.write(_cpio_entry("TRAILER!!!", 0, b"", 0))
    return gzip.compress(archive.getvalue(), mtime=0)


def build_initramfs_image(definition: InitramfsImage, kernel_source: ImageRecord, out_dir: Path) -> None:
    if not BUSYBOX.is_file():
        raise InfrastructureError(f"{BUSYBOX} is missing: install busybox-static (run 'make setup')")
    out_dir.mkdir(parents=True)
    shutil.copyfile(kernel_source.kernel_image, out_dir / "vmlinuz")  # not copy2: no libvirt labels (xattrs)
    (out_dir / "initrd.img").write_bytes(initramfs_bytes(definition.init, BUSYBOX.read_bytes()))
    # Every cell gets a disk, so control guests exercise the same clone and cleanup paths.
    run_tool(["qemu-img", "create", "-q", "-f", "qcow2", out_dir / "disk.qcow2", "64M"])
