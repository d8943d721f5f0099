"""Debian golden images without loop mounts: debootstrap → customize → kernel → mke2fs -d → qcow2.

The base root filesystem (debootstrap of the suite with the packages) is shared by every kernel
variant and cached by its own digest; each image then gets its kernel ABI installed from
Debian's packages, which builds the initramfs with the modules the testbed needs.
"""

import hashlib
import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from orchestrator.adapters.process import run_tool
from orchestrator.errors import InfrastructureError
from orchestrator.images.definition import BUILDER_REVISION, DebianImage

Progress = Callable[[str], None]

FASTBOOT_FILES = ("fast-init", "fast-shutdown", "udhcpc-script")
FAST_INIT = "/usr/lib/endpoint-testbed/fast-init"
"""PID 1 of a fast-boot image (see fastboot/fast-init): the same root, without systemd."""

# Modules the initramfs must carry: the root disk, and pvpanic so that even an early panic
# reaches the hypervisor (without it libvirt never hears of the crash).
_INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4", "pvpanic_mmio")

_NETWORK_UNIT = """[Match]
Name=eth* en*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
"""

_CRASH_SYSCTL = """# Endpoint Testbed: every oops, lockup, hung task and RCU stall becomes a panic the
# hypervisor sees; an injected NMI too. Never reboot on panic: the crashed guest stays preserved.
# (The kernel command line sets the same from the first instant of boot.)
kernel.panic_on_oops = 1
kernel.panic = 0
kernel.unknown_nmi_panic = 1
kernel.softlockup_panic = 1
kernel.hung_task_panic = 1
kernel.panic_on_rcu_stall = 1
"""

# Every clone makes its own SSH host key at its first boot: the testbed pins it (read through the
# guest agent) so that a cell can never pass against the wrong machine.
_HOST_KEY_UNIT = """[Unit]
Description=Endpoint Testbed: this clone's own SSH host key
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=ssh.service
"""
_SSHD_CONFIG = "HostKey /etc/ssh/ssh_host_ed25519_key\n"

# Units that only cost boot time in a throw-away test guest.
_MASKED_UNITS = (
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
)


def base_digest(definition: DebianImage, mirror: str) -> str:
    key = {"suite": definition.suite, "packages": sorted(definition.packages), "mirror": mirror}
    canonical = json.dumps({"base": key, "builder": BUILDER_REVISION}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ensure_base_rootfs(definition: DebianImage, mirror: str, cache_dir: Path, progress: Progress) -> Path:
    """debootstrap once per (suite, packages, mirror); later images copy the result."""
    base = cache_dir / f"base-{definition.suite}-{base_digest(definition, mirror)[:16]}"
    done = base / ".complete"
    if done.exists():
        return base / "rootfs"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    progress(f"debootstrap {definition.suite} ({len(definition.packages)} packages, about a minute)")
    run_tool(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(sorted(definition.packages))}",
            definition.suite,
            base / "rootfs",
            mirror,
        ],
        log=base / "debootstrap.log",
    )
    done.touch()
    for stale in cache_dir.glob(f"base-{definition.suite}-*"):
        if stale != base:
            shutil.rmtree(stale, ignore_errors=True)  # an older package set: never used again
    return base / "rootfs"


def write_into_root(root: Path, relative: str, text: str) -> None:
    """A file of the image's root file system, its directories made as needed."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def customize(root: Path, definition: DebianImage, log: Path, *, hostname: str | None = None) -> None:
    """What every testbed guest needs: console, network, crash reporting, a clean identity."""
    name = hostname or definition.name
    write_into_root(root, "etc/hostname", f"{name}\n")
    write_into_root(root, "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {name}\n")
    write_into_root(root, "etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    write_into_root(root, "etc/systemd/network/80-testbed-dhcp.network", _NETWORK_UNIT)
    write_into_root(root, "etc/modules-load.d/testbed-pvpanic.conf", "pvpanic_mmio\n")
    write_into_root(root, "etc/sysctl.d/90-testbed-crash.conf", _CRASH_SYSCTL)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_into_root(root, "etc/ssh/sshd_config.d/90-testbed.conf", _SSHD_CONFIG)
    write_into_root(root, "etc/systemd/system/testbed-ssh-host-key.service", _HOST_KEY_UNIT)
    for name in FASTBOOT_FILES:  # unused unless a fast-boot image boots this root with init=
        target = root / "usr/lib/endpoint-testbed" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((files("orchestrator.images") / "fastboot" / name).read_bytes())
        target.chmod(0o755)
    write_into_root(root, "etc/initramfs-tools/modules", "".join(f"{name}\n" for name in _INITRAMFS_MODULES))
    conf = root / "etc/initramfs-tools/initramfs.conf"
    conf.write_text(conf.read_text().replace("MODULES=most", "MODULES=list"))
    # An empty machine-id makes every clone generate its own on first boot. systemd would copy
    # dbus's build-time id instead if it were there, and then every clone shares one DHCP client
    # id and dnsmasq hands them all the same address.
    write_into_root(root, "etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    run_tool(
        ["chroot", root, "systemctl", "enable", "systemd-networkd", "ssh", "testbed-ssh-host-key", "--quiet"],
        log=log,
    )
    run_tool(["chroot", root, "systemctl", "mask", "--quiet", *_MASKED_UNITS], log=log)


def install_kernel(root: Path, kernel: str, debs_dir: Path, log: Path) -> None:
    """Install one Debian kernel ABI; its postinst builds the initramfs with our module list."""
    package = f"linux-image-{kernel}"
    debs_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(debs_dir.glob(f"{package}_*.deb"))
    if not found:
        # apt-get download writes into the current directory: one directory per cache.
        run_tool(["apt-get", "download", "-q", package], cwd=debs_dir, log=log)
        found = sorted(debs_dir.glob(f"{package}_*.deb"))
    if not found:
        raise InfrastructureError(f"{package} could not be downloaded: is it in the apt sources?")
    target = root / "tmp" / found[-1].name
    shutil.copy2(found[-1], target)
    try:
        inside = f"/tmp/{target.name}"  # noqa: S108 - a path inside the chroot
        run_tool(["chroot", root, "dpkg", "-i", inside], log=log)
    finally:
        target.unlink(missing_ok=True)


def _shrink(root: Path) -> None:
    for relative in (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
    ):
        path = root / relative
        if path.exists():
            shutil.rmtree(path)
            path.mkdir()
    for stale in ("initrd.img.old", "vmlinuz.old"):
        (root / stale).unlink(missing_ok=True)


def prepare_root(
    definition: DebianImage, mirror: str, work_dir: Path, progress: Progress, *, hostname: str | None = None
) -> tuple[Path, Path]:
    """The image's root file system in ``work_dir``, customized and with its kernel: (root, log)."""
    cache_dir = work_dir.parent
    base = ensure_base_rootfs(definition, mirror, cache_dir, progress)
    root = work_dir / "rootfs"
    log = work_dir / "build.log"
    progress(f"copying the base root filesystem for {hostname or definition.name}")
    run_tool(["cp", "-a", "--reflink=auto", base, root])
    customize(root, definition, log, hostname=hostname)
    progress(f"installing kernel {definition.kernel} and its initramfs")
    install_kernel(root, definition.kernel, cache_dir / "debs", log)
    return root, log


def finish_image(
    root: Path,
    definition: DebianImage,
    out_dir: Path,
    work_dir: Path,
    progress: Progress,
    *,
    initrd: bytes | None = None,
) -> None:
    """disk.qcow2, vmlinuz and initrd.img (the kernel package's, unless ``initrd`` is given)."""
    kernel_image = root / "boot" / f"vmlinuz-{definition.kernel}"
    packaged_initrd = root / "boot" / f"initrd.img-{definition.kernel}"
    if not (kernel_image.is_file() and packaged_initrd.is_file()):
        raise InfrastructureError(f"kernel {definition.kernel} installed no vmlinuz/initrd in /boot")
    _shrink(root)
    out_dir.mkdir(parents=True)
    shutil.copy2(kernel_image, out_dir / "vmlinuz")
    if initrd is None:
        shutil.copy2(packaged_initrd, out_dir / "initrd.img")
    else:
        (out_dir / "initrd.img").write_bytes(initrd)
    log = work_dir / "build.log"
    progress(f"making the ext4 file system ({definition.disk_size_mib} MiB) and the qcow2 image")
    raw = work_dir / "disk.raw"
    run_tool(
        ["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", root, raw, f"{definition.disk_size_mib}M"], log=log
    )
    run_tool(["qemu-img", "convert", "-O", "qcow2", raw, out_dir / "disk.qcow2"], log=log)
    raw.unlink()


def build_debian_image(
    definition: DebianImage, mirror: str, work_dir: Path, out_dir: Path, progress: Progress
) -> None:
    """Build into ``out_dir``: disk.qcow2, vmlinuz, initrd.img (out_dir must not exist yet)."""
    root, _ = prepare_root(definition, mirror, work_dir, progress)
    finish_image(root, definition, out_dir, work_dir, progress)
