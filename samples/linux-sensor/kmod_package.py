"""Build out-of-tree kernel modules and reproducible .tar.gz packages (stdlib only).

Shared by the sample builders: samples/linux-sensor/build_candidate.py (which re-exports these
names, as other samples import them from there) and kmod_product.py (the co-installed products).

!!! Building is fine; never load a module built here on the build host -- only inside
disposable guest VMs.
"""

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_HEADERS_ROOT = Path("/usr/src")
#: mtime of every tar entry (2024-07-19 04:09 UTC); SOURCE_DATE_EPOCH overrides.
DEFAULT_MTIME = 1721362140

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}$")
_KREL_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+~-]{0,127}$")


class BuildError(Exception):
    """Something could not be built; the message says why."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _modinfo_value(ko: bytes, key: str) -> str | None:
    """Read ``key=value`` from a .ko's .modinfo strings (no modinfo needed)."""
    m = re.search(rb"(?:^|\0)" + re.escape(key.encode()) + rb"=([^\0]*)\0", ko)
    return m.group(1).decode("utf-8", "replace") if m else None


def source_date_epoch() -> int:
    """The mtime of package entries: SOURCE_DATE_EPOCH, or the fixed default."""
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_MTIME))
    except ValueError as exc:
        raise BuildError(f"invalid SOURCE_DATE_EPOCH: {exc}") from exc


def headers_dir(kernel_release: str, headers_root: Path = DEFAULT_HEADERS_ROOT) -> Path:
    """The headers directory of one kernel release; a clear error when it is missing."""
    if not _KREL_RE.match(kernel_release):
        raise BuildError(f"invalid kernel release: {kernel_release!r}")
    headers = headers_root / f"linux-headers-{kernel_release}"
    if not (headers / "Makefile").is_file():
        raise BuildError(
            f"kernel headers for {kernel_release} not found: {headers} is missing "
            f"(install linux-headers-{kernel_release})"
        )
    return headers


def build_kmod(
    kernel_release: str,
    *,
    module_name: str,
    src_dir: Path,
    sources: Sequence[str],
    make_vars: Mapping[str, str],
    headers_root: Path = DEFAULT_HEADERS_ROOT,
) -> bytes:
    """Build ``<module_name>.ko`` for one kernel release out of tree; return its bytes.

    One temporary build directory per call; the directory is mapped out of the debug info so
    that the same sources and toolchain give byte-identical modules. make's output is shown only
    when the build fails. The module's vermagic must start with the requested release.
    """
    headers = headers_dir(kernel_release, headers_root)
    make = shutil.which("make")
    if make is None:
        raise BuildError("'make' not found in PATH")

    with tempfile.TemporaryDirectory(prefix=f"{module_name}-build-{kernel_release}-") as tmp:
        build_dir = Path(tmp)
        for name in sources:
            shutil.copy2(src_dir / name, build_dir / name)
        cmd = [
            make,
            "-C",
            str(headers),
            f"M={build_dir}",
            f"KCFLAGS=-ffile-prefix-map={build_dir}=/usr/src/{module_name}",
            *(f"{key}={value}" for key, value in make_vars.items()),
            "modules",
        ]
        env = dict(os.environ, LC_ALL="C")
        env.pop("MAKEFLAGS", None)
        env.pop("MFLAGS", None)
        proc = subprocess.run(
            cmd,
            cwd=build_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
        ko_path = build_dir / f"{module_name}.ko"
        if proc.returncode != 0 or not ko_path.is_file():
            raise BuildError(
                f"module build for {kernel_release} failed (exit {proc.returncode}):\n"
                f"$ {' '.join(cmd)}\n{proc.stdout}"
            )
        ko = ko_path.read_bytes()

    vermagic = _modinfo_value(ko, "vermagic")
    if vermagic is None or vermagic.split(" ", 1)[0] != kernel_release:
        raise BuildError(
            f"module built against {headers} has vermagic {vermagic!r}, "
            f"expected it to start with {kernel_release!r}"
        )
    return ko


def _tar_entry(
    name: str, *, size: int = 0, mode: int = 0o644, is_dir: bool = False, mtime: int
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_reproducible_tar_gz(out: Path, files: dict[str, tuple[bytes, int]], mtime: int) -> None:
    """Write ``files`` ({archive path: (data, mode)}) as a reproducible .tar.gz.

    Parent directories are added automatically; entries are sorted by name.
    """
    dirs: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = sorted([(d, True) for d in dirs] + [(f, False) for f in files])
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, is_dir in entries:
            if is_dir:
                tar.addfile(_tar_entry(name + "/", mode=0o755, is_dir=True, mtime=mtime))
            else:
                data, mode = files[name]
                tar.addfile(_tar_entry(name, size=len(data), mode=mode, mtime=mtime), io.BytesIO(data))
    tmp = out.with_name(out.name + ".tmp")
    with (
        tmp.open("wb") as f,
        gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw.getvalue())
    tmp.replace(out)
