#!/usr/bin/env python3
"""Build the sample "netguard" co-installed product (a traffic classifier).

    python samples/linux-netguard/build_product.py --out DIR \\
        --kernel 6.1.0-56-amd64 [--kernel 6.1.0-55-amd64] [--version 1.4.0] [-q]

For every kernel release the module in module/ is built out of tree against
/usr/src/linux-headers-<release>. DIR then receives:

    netguard-<version>-linux-x86_64.tar.gz    the package (same contract as a
        netguard/{install.sh,uninstall.sh,healthcheck.sh,VERSION}    Linux sensor package)
        netguard/modules/<release>/testbed_netguard.ko
    product.yaml                              what the testbed's products directory holds

Built and packaged like the sample DLP agent (samples/linux-dlp), with the sample
sensor's helpers (samples/linux-sensor/kmod_package.py): the tarball is reproducible.

!!! Together with the sample sensor 1.1.0 the module cuts the machine off the
network.  Never load it on the build host -- only inside disposable guest VMs.

Stdlib only; ``main(argv)`` is importable.
"""

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
KMOD_HELPERS = HERE.parent / "linux-sensor" / "kmod_package.py"
MODULE_SRC_DIR = HERE / "module"
MODULE_NAME = "testbed_netguard"
MODULE_SOURCES = ("Kbuild", "testbed_netguard.c")
PRODUCT_NAME = "netguard"
DEFAULT_VERSION = "1.4.0"
PACKAGE_SCRIPTS = ("install.sh", "uninstall.sh", "healthcheck.sh")
#: Where install.sh puts healthcheck.sh in the guest.
HEALTH_CHECK = "sh /var/lib/netguard/healthcheck.sh"
MANIFEST_NAME = "product.yaml"


def _load_kmod_helpers() -> ModuleType:
    """The sample sensor's build and packaging helpers (not a package)."""
    name = "_testbed_sensor_kmod_package"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, KMOD_HELPERS)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {KMOD_HELPERS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


_kmod = _load_kmod_helpers()
BuildError = _kmod.BuildError
DEFAULT_HEADERS_ROOT: Path = _kmod.DEFAULT_HEADERS_ROOT

#: (kernel release, product version, headers root) -> the .ko's bytes
ModuleCompiler = Callable[[str, str, Path], bytes]


def build_module(kernel_release: str, version: str, headers_root: Path = DEFAULT_HEADERS_ROOT) -> bytes:
    """Build testbed_netguard.ko for one kernel release; return its bytes."""
    return bytes(
        _kmod.build_kmod(
            kernel_release,
            module_name=MODULE_NAME,
            src_dir=MODULE_SRC_DIR,
            sources=MODULE_SOURCES,
            make_vars={"NG_VERSION": version},
            headers_root=headers_root,
        )
    )


@dataclass(frozen=True)
class Product:
    out_dir: Path
    manifest: Path
    package: Path
    package_sha256: str
    version: str
    kernels: tuple[str, ...]


def render_product_yaml(*, version: str, package_name: str, package_sha256: str) -> str:
    return (
        f"name: {PRODUCT_NAME}\n"
        f"version: {version}\n"
        "os_family: linux\n"
        f"package: {package_name}   # relative to this file's directory\n"
        f"sha256: {package_sha256}\n"
        "install_args: []\n"
        f'health_check: "{HEALTH_CHECK}"\n'
    )


def build_product(
    out_dir: Path,
    kernels: Sequence[str],
    *,
    version: str = DEFAULT_VERSION,
    headers_root: Path = DEFAULT_HEADERS_ROOT,
    log: Callable[[str], None] = print,
    compile_module: ModuleCompiler = build_module,
) -> Product:
    """Build modules, the package and product.yaml into ``out_dir``."""
    if not _kmod._VERSION_RE.match(version):
        raise BuildError(f"invalid version {version!r} (letters, digits, . + ~ - only)")
    if not kernels:
        raise BuildError("at least one --kernel is required")
    kernels = tuple(dict.fromkeys(kernels))
    for krel in kernels:  # every missing header directory before any compiling
        _kmod.headers_dir(krel, headers_root)
    mtime = _kmod.source_date_epoch()

    top = PRODUCT_NAME
    files: dict[str, tuple[bytes, int]] = {f"{top}/VERSION": (f"{version}\n".encode(), 0o644)}
    for script in PACKAGE_SCRIPTS:
        files[f"{top}/{script}"] = ((HERE / script).read_bytes(), 0o755)
    for krel in kernels:
        started = time.monotonic()
        ko = compile_module(krel, version, headers_root)
        log(f"built {MODULE_NAME}.ko for {krel} ({len(ko)} bytes, {time.monotonic() - started:.1f}s)")
        files[f"{top}/modules/{krel}/{MODULE_NAME}.ko"] = (ko, 0o644)

    out_dir.mkdir(parents=True, exist_ok=True)
    package = out_dir / f"{PRODUCT_NAME}-{version}-linux-x86_64.tar.gz"
    _kmod.write_reproducible_tar_gz(package, files, mtime)
    package_sha = str(_kmod.sha256_file(package))
    manifest = out_dir / MANIFEST_NAME
    manifest.write_text(
        render_product_yaml(version=version, package_name=package.name, package_sha256=package_sha)
    )
    log(f"wrote {package} (sha256 {package_sha})")
    log(f"wrote {manifest}")
    return Product(
        out_dir=out_dir,
        manifest=manifest,
        package=package,
        package_sha256=package_sha,
        version=version,
        kernels=kernels,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the sample netguard traffic classifier product (package + product.yaml)."
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--kernel",
        action="append",
        required=True,
        metavar="RELEASE",
        help="kernel release to build for, e.g. 6.1.0-56-amd64 (repeatable)",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="product version (default %(default)s)")
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
        build_product(args.out, args.kernel, version=args.version, headers_root=args.headers_root, log=log)
    except BuildError as exc:
        print(f"build_product: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
