"""Windows golden images: Packer installs Windows from the user's ISO (images/windows/).

The build needs what only the user or the host can give: the installation ISO and its sha256, the
virtio-win driver ISO, HashiCorp Packer 1.10+ with the QEMU plugin, xorriso (the CD with the answer
file) and a usable KVM. Each is checked before anything starts, and a missing one is refused with
what to do about it. The decisions -- the Packer command line, the CD's contents -- are pure
functions; the build itself is a thin adapter around ``packer build``.
"""

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters.kvm_probe import KvmVerdict, probe_kvm
from orchestrator.adapters.process import run_tool
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.images.catalog import ImageRecord
from orchestrator.images.definition import WindowsImage

Progress = Callable[[str], None]
Runner = Callable[..., str]

MINIMUM_PACKER = (1, 10)
PASSWORD_MARK = "@@TESTBED_PASSWORD@@"  # noqa: S105 - the placeholder in the answer files
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_PACKER_VERSION = re.compile(r"Packer v?(\d+)\.(\d+)")


@dataclass(frozen=True)
class WindowsMedia:
    """The installation ISO the user supplies, pinned by its digest."""

    iso: Path
    iso_sha256: str


def check_media(definition: WindowsImage, media: WindowsMedia | None) -> WindowsMedia:
    if media is None:
        raise ConfigurationError(
            f"image {definition.name}: a Windows image is installed from your own ISO: "
            f"testbed images build {definition.name} --iso PATH --iso-sha256 HEX"
        )
    if not _SHA256.match(media.iso_sha256):
        raise ConfigurationError(f"--iso-sha256: {media.iso_sha256!r} is not 64 hexadecimal digits")
    if not media.iso.is_file():
        raise ConfigurationError(f"--iso: {media.iso} is not a file")
    if not definition.virtio_win_iso.is_file():
        raise ConfigurationError(
            f"image {definition.name}: virtio_win_iso {definition.virtio_win_iso} is missing "
            "(get virtio-win.iso from the virtio-win project, or set virtio_win_iso in the definition)"
        )
    return WindowsMedia(media.iso.resolve(), media.iso_sha256.lower())


def check_build_host(which: Callable[[str], str | None], runner: Runner, kvm: KvmVerdict) -> None:
    """Packer 1.10+, xorriso and KVM, or a refusal that says what is missing."""
    if not kvm.usable:
        raise InfrastructureError(f"Windows images are built with KVM, unusable here: {kvm.reason}")
    if which("packer") is None:
        raise InfrastructureError(
            "packer is not installed: install HashiCorp Packer 1.10 or newer (Debian's packer 1.6 is too old "
            "for the QEMU plugin's UEFI and TPM options)"
        )
    found = _PACKER_VERSION.search(runner(["packer", "version"]))
    if found is None or (int(found.group(1)), int(found.group(2))) < MINIMUM_PACKER:
        version = found.group(0) if found else "of unknown version"
        raise InfrastructureError(f"{version} is too old: Windows images need Packer 1.10 or newer")
    if which("xorriso") is None:
        raise InfrastructureError("xorriso is not installed (apt-get install xorriso): it makes the setup CD")


def packer_command(
    definition: WindowsImage, media: WindowsMedia, *, windows_dir: Path, config_dir: Path, output_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """``packer build`` for one image, and the environment that carries the password (not argv)."""
    variables = {
        "iso_url": str(media.iso),
        "iso_checksum": f"sha256:{media.iso_sha256}",
        "config_dir": str(config_dir),
        "output_directory": str(output_dir),
        "secure_boot": str(definition.secure_boot).lower(),
        "tpm": str(definition.tpm).lower(),
        "disk_size_mib": str(definition.disk_size_mib),
        "memory_mib": str(definition.memory_mib),
        "cpus": str(definition.vcpus),
        "winrm_username": definition.username,
    }
    argv = ["packer", "build", "-timestamp-ui", f"-var-file={windows_dir / definition.packer_vars}"]
    for name, value in variables.items():
        argv += ["-var", f"{name}={value}"]
    argv.append(str(windows_dir / "packer"))
    return argv, {"PKR_VAR_winrm_password": definition.password, "PACKER_NO_COLOR": "1"}


def write_config_dir(definition: WindowsImage, windows_dir: Path, config_dir: Path) -> None:
    """The TESTBED CD's files: the answer files with the image's password, and the scripts.
    (The virtio-win drivers are extracted beside them by the build.)"""
    config_dir.mkdir(parents=True, exist_ok=True)
    sources = {
        "autounattend.xml": windows_dir / "unattend" / definition.autounattend / "autounattend.xml",
        "sysprep-unattend.xml": windows_dir / "unattend" / "sysprep-unattend.xml",
    }
    for name, source in sources.items():
        if not source.is_file():
            raise ConfigurationError(f"image {definition.name}: {source} is missing")
        text = source.read_text()
        if PASSWORD_MARK not in text:
            raise ConfigurationError(f"{source}: no {PASSWORD_MARK} to put the image's password in")
        (config_dir / name).write_text(text.replace(PASSWORD_MARK, definition.password))
    shutil.copytree(windows_dir / "scripts", config_dir / "scripts", dirs_exist_ok=True)


def build_windows_image(
    definition: WindowsImage,
    media: WindowsMedia | None,
    *,
    digest: str,
    images_dir: Path,
    windows_dir: Path,
    progress: Progress,
    runner: Runner = run_tool,
    which: Callable[[str], str | None] = shutil.which,
    kvm: Callable[[], KvmVerdict] = probe_kvm,
) -> ImageRecord:
    checked = check_media(definition, media)
    check_build_host(which, runner, kvm())
    final = images_dir / f"{definition.name}-{digest[:12]}"
    work = images_dir / ".cache" / f"work-{definition.name}"
    output = work / "output"  # packer insists on creating its output directory itself
    for stale in (work, final):
        if stale.exists():
            shutil.rmtree(stale)
    config_dir = work / "cd"
    write_config_dir(definition, windows_dir, config_dir)
    log = work / "build.log"
    progress(f"{definition.name}: extracting the virtio-win drivers")
    drivers = config_dir / "virtio-win"
    extract = ["xorriso", "-osirrox", "on", "-indev", definition.virtio_win_iso, "-extract", "/", drivers]
    runner(extract, log=log)
    progress(f"{definition.name}: packer init (the QEMU plugin)")
    runner(["packer", "init", windows_dir / "packer"], log=log)
    argv, environment = packer_command(
        definition, checked, windows_dir=windows_dir, config_dir=config_dir, output_dir=output
    )
    progress(f"{definition.name}: installing Windows with Packer (an hour or more; log: {log})")
    try:
        runner(argv, log=log, env={**os.environ, **environment}, timeout=definition.build_timeout_s)
    except InfrastructureError as exc:
        raise InfrastructureError(f"building image {definition.name} failed (log: {log}): {exc}") from exc
    for needed in ("disk.qcow2", "efivars.fd"):
        if not (output / needed).is_file():
            raise InfrastructureError(f"packer finished without {needed} in {output} (log: {log})")
    output.rename(final)
    final.chmod(0o755)
    shutil.rmtree(work, ignore_errors=True)
    nvram = final / "efivars.fd"  # the build's variable store: the domains' NVRAM template
    return ImageRecord(
        name=definition.name,
        kind=definition.kind,
        os_family=definition.os_family,
        os_version=definition.os_version,
        kernel=definition.os_version,
        digest=digest,
        directory=final,
        disk=final / "disk.qcow2",
        nvram_template=nvram,  # the UEFI variable store every domain starts from a copy of
        secure_boot=definition.secure_boot,
        tpm=definition.tpm,
        guest_username=definition.username,
        guest_password=definition.password,
        kernel_cmdline="",
        built_at=time.time(),
        disk_bytes=(final / "disk.qcow2").stat().st_size,
    )
