#!/usr/bin/env python3
"""Build a "testbed-faults" candidate: one package, the fault chosen by the content file.

    python samples/linux-faults/build_candidate.py --out DIR \\
        --kernel 6.1.0-56-amd64 [--kernel 6.1.0-55-amd64] \\
        --fault delayed-panic [--delay-s 40] [--version 1.0.0] [-q]

For every kernel release the module in module/ is built out of tree against
/usr/src/linux-headers-<release>. DIR then receives:

    testbed-faults-<version>-linux-x86_64.tar.gz   sensor package (the same for every fault)
        testbed-faults/{install.sh,uninstall.sh,healthcheck.sh,VERSION}
        testbed-faults/modules/<release>/testbed_faults.ko
    content/faults.conf                            fault=<fault>, delay_s=<seconds>
    candidate.yaml                                 manifest; the package names its health check

The tarball is reproducible with the sample sensor's helpers (imported from
samples/linux-sensor/build_candidate.py): sorted entries, fixed owner and
mtime, gzip mtime 0; the build directory is mapped out of the debug info.

!!! The module crashes, hangs, resets or cuts off the kernel it is loaded
into.  Never load it on the build host -- only inside disposable guest VMs.

Stdlib only; ``main(argv)`` is importable.
"""

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
SENSOR_BUILDER = HERE.parent / "linux-sensor" / "build_candidate.py"
MODULE_SRC_DIR = HERE / "module"
MODULE_NAME = "testbed_faults"
MODULE_SOURCES = ("testbed_faults.c", "Kbuild")
PACKAGE_NAME = "testbed-faults"
PACKAGE_SCRIPTS = ("install.sh", "uninstall.sh", "healthcheck.sh")
DEFAULT_HEADERS_ROOT = Path("/usr/src")
DEFAULT_VERSION = "1.0.0"
CONTENT_PATH = "content/faults.conf"
#: Where install.sh puts healthcheck.sh in the guest; the manifest's health_check runs it.
HEALTH_CHECK = "sh /var/lib/testbed-faults/healthcheck.sh"
#: The module refuses a larger delay (TBF_MAX_DELAY_S).
MAX_DELAY_S = 3600

#: Every fault and its default delay in seconds after load; None: the fault never fires.
FAULTS: dict[str, int | None] = {
    "none": None,  # the control: loads and does nothing
    "delayed-panic": 40,  # NULL dereference in a work item -> oops -> panic_on_oops
    "irq-spin": 20,  # spins with interrupts off: silent until an NMI is injected
    "net-drop": 5,  # netfilter drops every non-loopback IPv4 packet
    "warn": 5,  # one WARN_ON from the module, then runs on (taint W)
    "reset-loop": 3,  # emergency_restart() at every boot
    "sysctl-off": None,  # the installer turns the panic sysctls off
}

#: (kernel release, module version, headers root) -> the .ko's bytes
ModuleCompiler = Callable[[str, str, Path], bytes]


class BuildError(Exception):
    """A candidate could not be built; the message says why."""


def _load_sensor_builder() -> ModuleType:
    """The sample sensor's builder, for its packaging helpers (it is not a package)."""
    name = "_testbed_sensor_build_candidate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SENSOR_BUILDER)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot import {SENSOR_BUILDER}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


_sensor = _load_sensor_builder()


def resolve_delay(fault: str, delay_s: int | None) -> int | None:
    """The delay the content will carry, or None for a fault that never fires."""
    if fault not in FAULTS:
        raise BuildError(f"unknown fault {fault!r} (one of: {', '.join(FAULTS)})")
    default = FAULTS[fault]
    if default is None:
        if delay_s is not None:
            raise BuildError(f"--delay-s makes no sense for fault {fault!r}: it never fires")
        return None
    delay = default if delay_s is None else delay_s
    if not 0 <= delay <= MAX_DELAY_S:
        raise BuildError(f"--delay-s must be 0..{MAX_DELAY_S} seconds, got {delay}")
    return delay


def render_content(fault: str, delay_s: int | None) -> bytes:
    """faults.conf: the text the module parses at load time."""
    delay = resolve_delay(fault, delay_s)
    lines = ["# testbed-faults content: the fault the testbed_faults module injects", f"fault={fault}"]
    if delay is not None:
        lines.append(f"delay_s={delay}")
    return ("\n".join(lines) + "\n").encode()


def _check_kernel_release(kernel_release: str, headers_root: Path) -> Path:
    if not _sensor._KREL_RE.match(kernel_release):
        raise BuildError(f"invalid kernel release: {kernel_release!r}")
    headers = headers_root / f"linux-headers-{kernel_release}"
    if not (headers / "Makefile").is_file():
        raise BuildError(
            f"kernel headers for {kernel_release} not found: {headers} is missing "
            f"(install linux-headers-{kernel_release})"
        )
    return headers


def build_module(kernel_release: str, version: str, headers_root: Path = DEFAULT_HEADERS_ROOT) -> bytes:
    """Build testbed_faults.ko for one kernel release; return its bytes."""
    headers = _check_kernel_release(kernel_release, headers_root)
    make = shutil.which("make")
    if make is None:
        raise BuildError("'make' not found in PATH")
    with tempfile.TemporaryDirectory(prefix=f"tbf-build-{kernel_release}-") as tmp:
        build_dir = Path(tmp)
        for name in MODULE_SOURCES:
            shutil.copy2(MODULE_SRC_DIR / name, build_dir / name)
        cmd = [
            make,
            "-C",
            str(headers),
            f"M={build_dir}",
            # The random build directory must not reach the debug info: builds stay repeatable.
            f"KCFLAGS=-ffile-prefix-map={build_dir}=/usr/src/{MODULE_NAME}",
            f"TBF_VERSION={version}",
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
    vermagic = _sensor._modinfo_value(ko, "vermagic")
    if vermagic is None or vermagic.split(" ", 1)[0] != kernel_release:
        raise BuildError(
            f"module built against {headers} has vermagic {vermagic!r}, "
            f"expected it to start with {kernel_release!r}"
        )
    return bytes(ko)


@dataclass(frozen=True)
class Candidate:
    out_dir: Path
    manifest: Path
    package: Path
    package_sha256: str
    content: Path
    content_sha256: str
    fault: str
    delay_s: int | None
    kernels: tuple[str, ...]


def render_candidate_yaml(
    *, version: str, package_name: str, package_sha256: str, fault: str, content_sha256: str
) -> str:
    return (
        f"# testbed-faults candidate: fault {fault}\n"
        f"name: {PACKAGE_NAME}\n"
        f"version: {version}\n"
        "artifacts:\n"
        "  - name: faults-linux\n"
        "    kind: sensor_package\n"
        "    os_family: linux\n"
        f"    path: {package_name}\n"
        f"    sha256: {package_sha256}\n"
        f'    health_check: "{HEALTH_CHECK}"\n'
        f"  - name: faults-{fault}\n"
        "    kind: content\n"
        f"    path: {CONTENT_PATH}\n"
        f"    sha256: {content_sha256}\n"
    )


def build_candidate(
    out_dir: Path,
    kernels: Sequence[str],
    *,
    fault: str,
    delay_s: int | None = None,
    version: str = DEFAULT_VERSION,
    headers_root: Path = DEFAULT_HEADERS_ROOT,
    log: Callable[[str], None] = print,
    compile_module: ModuleCompiler = build_module,
) -> Candidate:
    """Build modules, package, content and candidate.yaml into ``out_dir``."""
    if not _sensor._VERSION_RE.match(version):
        raise BuildError(f"invalid version {version!r} (letters, digits, . + ~ - only)")
    if not kernels:
        raise BuildError("at least one --kernel is required")
    content_bytes = render_content(fault, delay_s)
    kernels = tuple(dict.fromkeys(kernels))  # de-duplicate, keep order
    for krel in kernels:  # every missing header directory before any compiling
        _check_kernel_release(krel, headers_root)
    try:
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", _sensor.DEFAULT_MTIME))
    except ValueError as exc:
        raise BuildError(f"invalid SOURCE_DATE_EPOCH: {exc}") from exc

    top = PACKAGE_NAME
    files: dict[str, tuple[bytes, int]] = {f"{top}/VERSION": (f"{version}\n".encode(), 0o644)}
    for script in PACKAGE_SCRIPTS:
        files[f"{top}/{script}"] = ((HERE / script).read_bytes(), 0o755)
    for krel in kernels:
        started = time.monotonic()
        ko = compile_module(krel, version, headers_root)
        log(f"built {MODULE_NAME}.ko for {krel} ({len(ko)} bytes, {time.monotonic() - started:.1f}s)")
        files[f"{top}/modules/{krel}/{MODULE_NAME}.ko"] = (ko, 0o644)

    out_dir.mkdir(parents=True, exist_ok=True)
    package_name = f"{PACKAGE_NAME}-{version}-linux-x86_64.tar.gz"
    package = out_dir / package_name
    _sensor.write_reproducible_tar_gz(package, files, mtime)
    content_path = out_dir / CONTENT_PATH
    content_path.parent.mkdir(parents=True, exist_ok=True)
    content_path.write_bytes(content_bytes)

    package_sha = str(_sensor.sha256_file(package))
    content_sha = hashlib.sha256(content_bytes).hexdigest()
    manifest = out_dir / "candidate.yaml"
    manifest.write_text(
        render_candidate_yaml(
            version=version,
            package_name=package_name,
            package_sha256=package_sha,
            fault=fault,
            content_sha256=content_sha,
        )
    )
    delay = resolve_delay(fault, delay_s)
    log(f"wrote {package} (sha256 {package_sha})")
    log(f"wrote {content_path} (fault {fault}, delay_s {delay}, sha256 {content_sha})")
    log(f"wrote {manifest}")
    return Candidate(
        out_dir=out_dir,
        manifest=manifest,
        package=package,
        package_sha256=package_sha,
        content=content_path,
        content_sha256=content_sha,
        fault=fault,
        delay_s=delay,
        kernels=kernels,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build a testbed-faults candidate (kernel modules, package, faults.conf, candidate.yaml)."
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--kernel",
        action="append",
        required=True,
        metavar="RELEASE",
        help="kernel release to build for, e.g. 6.1.0-56-amd64 (repeatable)",
    )
    parser.add_argument("--fault", required=True, choices=tuple(FAULTS), help="the fault the content selects")
    parser.add_argument(
        "--delay-s",
        type=int,
        default=None,
        help="seconds after load at which a timed fault fires (defaults: "
        + ", ".join(f"{f} {d}" for f, d in FAULTS.items() if d is not None)
        + ")",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="package version (default %(default)s)")
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
            fault=args.fault,
            delay_s=args.delay_s,
            version=args.version,
            headers_root=args.headers_root,
            log=log,
        )
    except BuildError as exc:
        print(f"build_candidate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
