"""Fast-boot images: a Debian root with only the kernel modules a test guest needs, a minimal
initramfs, and ``fast-init`` as PID 1 instead of systemd.

Under TCG a full Debian boot costs ~50 s and a candidate's ``depmod`` ~30 s (it reads every one of
the kernel's ~3800 modules). For cells where the OS is not the point (fault samples, content
variants, crash policies) the fast image keeps the same Debian packages and kernel, but its module
tree holds only the closure of what virtio guests, pvpanic and ext4 need — ``depmod`` then takes
a moment — and its initramfs is busybox loading those few modules and switching to the root.
"""

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from orchestrator.adapters.process import run_tool
from orchestrator.errors import InfrastructureError
from orchestrator.images.debian_builder import (
    FAST_INIT,
    Progress,
    finish_image,
    prepare_root,
    write_into_root,
)
from orchestrator.images.definition import DebianImage, FastBootImage
from orchestrator.images.initramfs_builder import BUSYBOX, initramfs_bytes

CRASH_FROM_BOOT = "/etc/endpoint-testbed/crash-from-boot"
"""Where a control image broken on purpose keeps the boot it crashes from (read by fast-init)."""
ROOT_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
"""What the initramfs loads to mount the root: the rest is fast-init's to load."""

_INIT = """#!/bin/sh
# Endpoint Testbed fast-boot initramfs: load what the root file system needs, mount it, switch.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /lib/modules/order); do insmod "/lib/modules/$module" 2>/dev/null; done
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  [ -b /dev/vda ] && break
  sleep 0.25
done
if ! mount -t ext4 -o rw /dev/vda /root; then
  echo "fast-boot initramfs: cannot mount /dev/vda"
  poweroff -f
fi
umount /proc /sys
mount --move /dev /root/dev 2>/dev/null || umount /dev
exec switch_root /root {init}
"""


def module_dependencies(modules_dep: str) -> dict[str, list[str]]:
    """modules.dep as ``{module path: [dependency paths]}`` (paths relative to the module tree)."""
    graph: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        path, _, deps = line.partition(":")
        if path.strip():
            graph[path.strip()] = deps.split()
    return graph


def module_name(path: str) -> str:
    base = Path(path).name
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def closure(graph: Mapping[str, list[str]], wanted: Iterable[str]) -> list[str]:
    """Every module ``wanted`` needs, dependencies first (the order insmod must follow)."""
    by_name = {module_name(path): path for path in graph}
    missing = [name for name in wanted if name.replace("-", "_") not in by_name]
    if missing:
        raise InfrastructureError(f"the kernel has no module(s) {', '.join(missing)}")
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        for dependency in graph.get(path, []):
            visit(dependency)
        ordered.append(path)

    for name in wanted:
        visit(by_name[name.replace("-", "_")])
    return ordered


def trim_modules(root: Path, kernel: str, keep: list[str], log: Path) -> None:
    """Delete every module outside ``keep`` (paths relative to the tree), then index the rest."""
    tree = root / "lib" / "modules" / kernel
    kept = set(keep)
    for module in sorted(tree.rglob("*.ko*")):
        if str(module.relative_to(tree)) not in kept:
            module.unlink()
    run_tool(["chroot", root, "depmod", "-a", kernel], log=log)


def build_fastboot_image(
    definition: FastBootImage,
    base: DebianImage,
    *,
    mirror: str,
    work_dir: Path,
    out_dir: Path,
    progress: Progress,
) -> None:
    """Build into ``out_dir``: disk.qcow2, vmlinuz, initrd.img — the base image, trimmed."""
    if not BUSYBOX.is_file():
        raise InfrastructureError(f"{BUSYBOX} is missing: install busybox-static (run 'make setup')")
    root, log = prepare_root(base, mirror, work_dir, progress, hostname=definition.name)
    tree = root / "lib" / "modules" / base.kernel
    graph = module_dependencies((tree / "modules.dep").read_text())
    keep = closure(graph, definition.modules)
    progress(f"keeping {len(keep)} of {len(graph)} kernel modules for {definition.name}")
    trim_modules(root, base.kernel, keep, log)
    if definition.crash_from_boot is not None:
        write_into_root(root, CRASH_FROM_BOOT.lstrip("/"), f"{definition.crash_from_boot}\n")
    boot = closure(graph, ROOT_MODULES)
    files = tuple((f"lib/modules/{Path(path).name}", (tree / path).read_bytes()) for path in boot)
    order = "".join(f"{Path(path).name}\n" for path in boot).encode()
    initrd = initramfs_bytes(
        _INIT.replace("{init}", FAST_INIT), BUSYBOX.read_bytes(), (*files, ("lib/modules/order", order))
    )
    finish_image(root, base, out_dir, work_dir, progress, initrd=initrd)
    shutil.rmtree(root, ignore_errors=True)
