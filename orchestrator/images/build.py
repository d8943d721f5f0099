"""Build golden images from their definitions, skipping any whose digest is already in the catalog."""

import fcntl
import hashlib
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.images.catalog import ImageCatalog, ImageRecord
from orchestrator.images.debian_builder import FAST_INIT, build_debian_image
from orchestrator.images.definition import (
    DebianImage,
    FastBootImage,
    InitramfsImage,
    WindowsImage,
    definition_digest,
)
from orchestrator.images.fastboot_builder import build_fastboot_image
from orchestrator.images.initramfs_builder import BUSYBOX, build_initramfs_image
from orchestrator.images.windows_builder import WindowsMedia, build_windows_image

Progress = Callable[[str], None]
Definition = DebianImage | InitramfsImage | FastBootImage | WindowsImage


@dataclass(frozen=True)
class BuildResult:
    """What happened to one image."""

    record: ImageRecord
    built: bool  # False when the catalog already had this digest
    seconds: float


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """One builder at a time per image directory (two runs of 'make test' may start together)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ordered(definitions: Mapping[str, Definition], names: list[str] | None) -> list[Definition]:
    wanted = list(definitions) if names is None else names
    unknown = [name for name in wanted if name not in definitions]
    if unknown:
        raise ConfigurationError(
            f"unknown image(s): {', '.join(unknown)} (defined: {', '.join(sorted(definitions))})"
        )
    selected: list[Definition] = []
    for name in wanted:
        definition = definitions[name]
        if isinstance(definition, InitramfsImage | FastBootImage):
            field, base_name = (
                ("kernel_from", definition.kernel_from)
                if isinstance(definition, InitramfsImage)
                else ("base", definition.base)
            )
            source = definitions.get(base_name)
            if not isinstance(source, DebianImage):
                raise ConfigurationError(f"image {name}: {field} {base_name!r} is not a defined debian image")
            if source not in selected:
                selected.append(source)
        if definition not in selected:
            selected.append(definition)
    # Images built on a Debian image come after it.
    return sorted(selected, key=lambda item: isinstance(item, InitramfsImage | FastBootImage))


def _digest(
    definition: Definition, catalog: Mapping[str, ImageRecord], media: Mapping[str, WindowsMedia]
) -> str:
    if isinstance(definition, DebianImage):
        return definition_digest(definition)
    if isinstance(definition, FastBootImage):
        return definition_digest(
            definition, {"base": catalog[definition.base].digest, "busybox": _busybox_digest()}
        )
    if isinstance(definition, WindowsImage):  # the same definition from another ISO is another image
        iso = media.get(definition.name)
        return definition_digest(definition, {"iso": iso.iso_sha256.lower() if iso else "none"})
    return definition_digest(
        definition, {"kernel": catalog[definition.kernel_from].digest, "busybox": _busybox_digest()}
    )


def _busybox_digest() -> str:
    return hashlib.sha256(BUSYBOX.read_bytes()).hexdigest() if BUSYBOX.exists() else "missing"


def build_images(
    definitions: Mapping[str, Definition],
    images_dir: Path,
    mirror: str,
    progress: Progress,
    *,
    names: list[str] | None = None,
    overlay_dirs: tuple[Path, ...] = (),
    windows_media: Mapping[str, WindowsMedia] | None = None,
    windows_dir: Path | None = None,
) -> list[BuildResult]:
    """Build what is missing or changed; each image appears in the catalog only once complete.

    Superseded builds of the same image are deleted unless an overlay in ``overlay_dirs`` (a
    running cell) still has them as its backing file.
    """
    catalog = ImageCatalog(images_dir)
    results = []
    with _exclusive(images_dir / ".build.lock"):
        for definition in _ordered(definitions, names):
            started = time.monotonic()
            records = catalog.usable()
            digest = _digest(definition, records, windows_media or {})
            current = records.get(definition.name)
            if current is not None and current.digest == digest:
                _prune_superseded(images_dir, current, overlay_dirs, progress)
                results.append(BuildResult(current, built=False, seconds=0.0))
                continue
            progress(f"building image {definition.name} ({digest[:12]})")
            record = _build_one(
                definition,
                digest=digest,
                images_dir=images_dir,
                mirror=mirror,
                records=records,
                bases={name: d for name, d in definitions.items() if isinstance(d, DebianImage)},
                progress=progress,
                windows_media=windows_media or {},
                windows_dir=windows_dir,
            )
            catalog.put(record)
            _prune_superseded(images_dir, record, overlay_dirs, progress)
            elapsed = time.monotonic() - started
            progress(f"image {definition.name} ready in {elapsed:.0f}s")
            results.append(BuildResult(record, built=True, seconds=elapsed))
    return results


def _build_one(
    definition: Definition,
    *,
    digest: str,
    images_dir: Path,
    mirror: str,
    records: Mapping[str, ImageRecord],
    bases: Mapping[str, DebianImage],
    progress: Progress,
    windows_media: Mapping[str, WindowsMedia],
    windows_dir: Path | None,
) -> ImageRecord:
    if isinstance(definition, WindowsImage):
        if windows_dir is None:
            raise ConfigurationError(f"image {definition.name}: no Windows templates directory given")
        return build_windows_image(
            definition,
            windows_media.get(definition.name),
            digest=digest,
            images_dir=images_dir,
            windows_dir=windows_dir,
            progress=progress,
        )
    final = images_dir / f"{definition.name}-{digest[:12]}"
    staging = images_dir / f".staging-{definition.name}-{digest[:12]}"
    work = images_dir / ".cache" / f"work-{definition.name}"
    for stale in (staging, work):
        if stale.exists():
            shutil.rmtree(stale)
    work.mkdir(parents=True)
    try:
        if isinstance(definition, DebianImage):
            build_debian_image(definition, mirror, work, staging, progress)
            kernel = definition.kernel
        elif isinstance(definition, FastBootImage):
            base = bases[definition.base]
            build_fastboot_image(
                definition, base, mirror=mirror, work_dir=work, out_dir=staging, progress=progress
            )
            kernel = base.kernel
        else:
            source = records[definition.kernel_from]
            build_initramfs_image(definition, source, staging)
            kernel = source.kernel
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except InfrastructureError as exc:
        raise InfrastructureError(
            f"building image {definition.name} failed (log: {work}/build.log): {exc}"
        ) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    shutil.rmtree(work, ignore_errors=True)
    final.chmod(0o755)
    return ImageRecord(
        name=definition.name,
        kind=definition.kind,
        os_family=definition.os_family,
        os_version=_os_version(definition, bases),
        kernel=kernel,
        digest=digest,
        directory=final,
        disk=final / "disk.qcow2",
        kernel_image=final / "vmlinuz",
        initrd=final / "initrd.img",
        kernel_cmdline=_cmdline(definition, bases),
        built_at=time.time(),
        disk_bytes=(final / "disk.qcow2").stat().st_size,
        expected_outcome=getattr(definition, "expected_outcome", None),
    )


def _cmdline(
    definition: DebianImage | InitramfsImage | FastBootImage, bases: Mapping[str, DebianImage]
) -> str:
    if isinstance(definition, FastBootImage):
        return f"{bases[definition.base].kernel_cmdline} init={FAST_INIT}"
    return definition.kernel_cmdline


def _os_version(
    definition: DebianImage | InitramfsImage | FastBootImage, bases: Mapping[str, DebianImage]
) -> str:
    if isinstance(definition, FastBootImage):
        return f"{bases[definition.base].os_version}-fastboot"
    return definition.os_version


def qcow2_backing_file(path: Path) -> str | None:
    """The backing file named in a qcow2 header (offset at byte 8, length at byte 16)."""
    with path.open("rb") as stream:
        header = stream.read(20)
        if len(header) < 20 or header[:4] != b"QFI\xfb":
            return None
        offset = int.from_bytes(header[8:16], "big")
        length = int.from_bytes(header[16:20], "big")
        if not offset or not length:
            return None
        stream.seek(offset)
        return stream.read(length).decode(errors="replace")


def _prune_superseded(
    images_dir: Path, current: ImageRecord, overlay_dirs: tuple[Path, ...], progress: Progress
) -> None:
    backing_in_use = {
        backing
        for directory in overlay_dirs
        if directory.is_dir()
        for overlay in directory.glob("*.qcow2")
        if (backing := qcow2_backing_file(overlay)) is not None
    }
    for old in sorted(images_dir.glob(f"{current.name}-*")):
        if (
            old == current.directory
            or not old.is_dir()
            or not re.fullmatch(rf"{re.escape(current.name)}-[0-9a-f]{{12}}", old.name)
        ):
            continue
        if str(old / "disk.qcow2") in backing_in_use:
            progress(f"keeping superseded {old.name}: a running cell still uses it")
            continue
        shutil.rmtree(old)
        progress(f"removed superseded {old.name}")
