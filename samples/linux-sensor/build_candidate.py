#!/usr/bin/env python3
"""Build the sample "testbed-sensor" release candidate.

    python samples/linux-sensor/build_candidate.py --out DIR \\
        --kernel 6.1.0-56-amd64 --kernel 6.1.0-55-amd64 \\
        [--content good|zero-filled] [--version 1.0.0]

For every kernel release the module in module/ is built out of tree against
/usr/src/linux-headers-<release> (one temporary build directory per kernel).
DIR then receives:

    testbed-sensor-<version>-linux-x86_64.tar.gz   sensor package
        testbed-sensor/install.sh
        testbed-sensor/uninstall.sh
        testbed-sensor/VERSION
        testbed-sensor/modules/<release>/testbed_sensor.ko
    content/channel-<content version>.bin          content file
    candidate.yaml                                 candidate manifest

The tarball is reproducible (sorted entries, fixed mtime/owner, gzip mtime 0):
identical inputs give an identical digest.

!!! The module crashes the kernel on bad content.  Never load it on the
build host -- only inside disposable guest VMs.

Stdlib only; ``main(argv)`` is importable.
"""

import argparse
import gzip
import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
MODULE_SRC_DIR = HERE / "module"
MODULE_NAME = "testbed_sensor"
PACKAGE_NAME = "testbed-sensor"
DEFAULT_HEADERS_ROOT = Path("/usr/src")
DEFAULT_VERSION = "1.0.0"
#: mtime of every tar entry (2024-07-19 04:09 UTC); SOURCE_DATE_EPOCH overrides.
DEFAULT_MTIME = 1721362140
MODULE_SOURCES = ("testbed_sensor.c", "Kbuild")
PACKAGE_SCRIPTS = ("install.sh", "uninstall.sh")

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}$")
_KREL_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+~-]{0,127}$")


class BuildError(Exception):
    """A candidate could not be built; the message says why."""


def _load_make_content() -> ModuleType:
    """Import make_content.py from this directory (it is not a package)."""
    name = "_testbed_sensor_make_content"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "make_content.py")
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot import {HERE / 'make_content.py'}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


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


def build_module(
    kernel_release: str,
    version: str,
    headers_root: Path = DEFAULT_HEADERS_ROOT,
    src_dir: Path = MODULE_SRC_DIR,
) -> bytes:
    """Build testbed_sensor.ko for one kernel release; return its bytes."""
    if not _KREL_RE.match(kernel_release):
        raise BuildError(f"invalid kernel release: {kernel_release!r}")
    headers = headers_root / f"linux-headers-{kernel_release}"
    if not (headers / "Makefile").is_file():
        raise BuildError(
            f"kernel headers for {kernel_release} not found: {headers} is missing "
            f"(install linux-headers-{kernel_release})"
        )
    make = shutil.which("make")
    if make is None:
        raise BuildError("'make' not found in PATH")

    with tempfile.TemporaryDirectory(prefix=f"tbs-build-{kernel_release}-") as tmp:
        build_dir = Path(tmp)
        for name in MODULE_SOURCES:
            shutil.copy2(src_dir / name, build_dir / name)
        # Map the random temp dir out of debug info so builds are repeatable.
        cmd = [
            make,
            "-C",
            str(headers),
            f"M={build_dir}",
            f"KCFLAGS=-ffile-prefix-map={build_dir}=/usr/src/{MODULE_NAME}",
            f"TBS_VERSION={version}",
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
        ko_path = build_dir / f"{MODULE_NAME}.ko"
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


@dataclass(frozen=True)
class Candidate:
    out_dir: Path
    manifest: Path
    package: Path
    package_sha256: str
    content: Path
    content_sha256: str
    kernels: tuple[str, ...]


def render_candidate_yaml(
    *,
    version: str,
    package_name: str,
    package_sha256: str,
    content_name: str,
    content_path: str,
    content_sha256: str,
) -> str:
    return (
        f"name: {PACKAGE_NAME}\n"
        f"version: {version}\n"
        "artifacts:\n"
        "  - name: sensor-linux\n"
        "    kind: sensor_package\n"
        "    os_family: linux\n"
        f"    path: {package_name}\n"
        f"    sha256: {package_sha256}\n"
        f"  - name: {content_name}\n"
        "    kind: content\n"
        f"    path: {content_path}\n"
        f"    sha256: {content_sha256}\n"
    )


def build_candidate(
    out_dir: Path,
    kernels: Sequence[str],
    *,
    content: str = "good",
    version: str = DEFAULT_VERSION,
    content_version: int | None = None,
    rules: int | None = None,
    headers_root: Path = DEFAULT_HEADERS_ROOT,
    log: Callable[[str], None] = print,
) -> Candidate:
    """Build modules, package, content and candidate.yaml into ``out_dir``."""
    mc = _load_make_content()
    if not _VERSION_RE.match(version):
        raise BuildError(f"invalid version {version!r} (letters, digits, . + ~ - only)")
    if not kernels:
        raise BuildError("at least one --kernel is required")
    kernels = tuple(dict.fromkeys(kernels))  # de-duplicate, keep order
    cver = mc.DEFAULT_CONTENT_VERSION if content_version is None else content_version
    nrules = mc.DEFAULT_RULE_COUNT if rules is None else rules
    try:
        content_bytes = mc.build_content(content, content_version=cver, rule_count=nrules)
    except ValueError as exc:
        raise BuildError(str(exc)) from exc

    # Fail early and clearly if any headers are missing, before building.
    for krel in kernels:
        if not _KREL_RE.match(krel):
            raise BuildError(f"invalid kernel release: {krel!r}")
        headers = headers_root / f"linux-headers-{krel}"
        if not (headers / "Makefile").is_file():
            raise BuildError(
                f"kernel headers for {krel} not found: {headers} is missing (install linux-headers-{krel})"
            )

    try:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_MTIME))
    except ValueError as exc:
        raise BuildError(f"invalid SOURCE_DATE_EPOCH: {exc}") from exc
    top = PACKAGE_NAME
    files: dict[str, tuple[bytes, int]] = {
        f"{top}/VERSION": (f"{version}\n".encode(), 0o644),
    }
    for script in PACKAGE_SCRIPTS:
        files[f"{top}/{script}"] = ((HERE / script).read_bytes(), 0o755)
    for krel in kernels:
        t0 = time.monotonic()
        ko = build_module(krel, version, headers_root=headers_root)
        log(f"built {MODULE_NAME}.ko for {krel} ({len(ko)} bytes, {time.monotonic() - t0:.1f}s)")
        files[f"{top}/modules/{krel}/{MODULE_NAME}.ko"] = (ko, 0o644)

    out_dir.mkdir(parents=True, exist_ok=True)
    package_name = f"{PACKAGE_NAME}-{version}-linux-x86_64.tar.gz"
    package = out_dir / package_name
    write_reproducible_tar_gz(package, files, mtime)

    content_name = f"channel-{cver}"
    content_rel = f"content/{content_name}.bin"
    content_path = out_dir / content_rel
    content_path.parent.mkdir(parents=True, exist_ok=True)
    content_path.write_bytes(content_bytes)

    package_sha = sha256_file(package)
    content_sha = hashlib.sha256(content_bytes).hexdigest()
    manifest = out_dir / "candidate.yaml"
    manifest.write_text(
        render_candidate_yaml(
            version=version,
            package_name=package_name,
            package_sha256=package_sha,
            content_name=content_name,
            content_path=content_rel,
            content_sha256=content_sha,
        )
    )
    log(f"wrote {package} (sha256 {package_sha})")
    log(f"wrote {content_path} ({content} content, {len(content_bytes)} bytes, sha256 {content_sha})")
    log(f"wrote {manifest}")
    return Candidate(
        out_dir=out_dir,
        manifest=manifest,
        package=package,
        package_sha256=package_sha,
        content=content_path,
        content_sha256=content_sha,
        kernels=kernels,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the sample testbed-sensor candidate (kernel modules, "
        "package, content file, candidate.yaml)."
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--kernel",
        action="append",
        required=True,
        metavar="RELEASE",
        help="kernel release to build for, e.g. 6.1.0-56-amd64 (repeatable)",
    )
    parser.add_argument(
        "--content",
        choices=("good", "zero-filled"),
        default="good",
        help="content file to ship (default %(default)s; zero-filled crashes the sensor)",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="sensor version (default %(default)s)")
    parser.add_argument("--content-version", type=int, default=None, help="content version (default 291)")
    parser.add_argument("--rules", type=int, default=None, help="number of rules in the content (default 12)")
    parser.add_argument(
        "--headers-root",
        type=Path,
        default=DEFAULT_HEADERS_ROOT,
        help="directory holding linux-headers-<release> (default %(default)s)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    log: Callable[[str], None] = (lambda _msg: None) if args.quiet else print
    try:
        build_candidate(
            args.out,
            args.kernel,
            content=args.content,
            version=args.version,
            content_version=args.content_version,
            rules=args.rules,
            headers_root=args.headers_root,
            log=log,
        )
    except BuildError as exc:
        print(f"build_candidate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
