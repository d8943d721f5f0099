"""A co-installed sample product made of one kernel module: its build, its package and its
``product.yaml``, the same for every such product (samples/linux-dlp, samples/linux-netguard).

A product directory holds ``module/`` (the module's sources), ``install.sh``, ``uninstall.sh`` and
``healthcheck.sh``; its ``build_product.py`` describes it with a ``KmodProduct`` and exposes the
methods below. The package follows the Linux installer contract of the sample sensor and is
reproducible with its helpers (kmod_package.py).

Stdlib only.
"""

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

KMOD_HELPERS = Path(__file__).resolve().parent / "kmod_package.py"
PACKAGE_SCRIPTS = ("install.sh", "uninstall.sh", "healthcheck.sh")
MANIFEST_NAME = "product.yaml"


def load_kmod_helpers() -> ModuleType:
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


_kmod = load_kmod_helpers()
BuildError = _kmod.BuildError
DEFAULT_HEADERS_ROOT: Path = _kmod.DEFAULT_HEADERS_ROOT

#: (kernel release, product version, headers root) -> the .ko's bytes
ModuleCompiler = Callable[[str, str, Path], bytes]


@dataclass(frozen=True)
class Product:
    out_dir: Path
    manifest: Path
    package: Path
    package_sha256: str
    version: str
    kernels: tuple[str, ...]


@dataclass(frozen=True)
class KmodProduct:
    """One sample product: where it lives and what it is called."""

    directory: Path  # the product's sample directory (module/, the scripts)
    name: str  # the product's name in matrices (coinstalled: [[name]]) and its package's top directory
    module_name: str
    default_version: str
    version_make_var: str  # how the module's Kbuild learns the product version
    description: str  # for --help: "the sample DLP agent product"

    @property
    def health_check(self) -> str:
        return f"sh /var/lib/{self.name}/healthcheck.sh"  # where install.sh puts it in the guest

    def build_module(
        self, kernel_release: str, version: str, headers_root: Path = DEFAULT_HEADERS_ROOT
    ) -> bytes:
        """Build the module for one kernel release; return its bytes."""
        return bytes(
            _kmod.build_kmod(
                kernel_release,
                module_name=self.module_name,
                src_dir=self.directory / "module",
                sources=("Kbuild", f"{self.module_name}.c"),
                make_vars={self.version_make_var: version},
                headers_root=headers_root,
            )
        )

    def render_product_yaml(self, *, version: str, package_name: str, package_sha256: str) -> str:
        return (
            f"name: {self.name}\n"
            f"version: {version}\n"
            "os_family: linux\n"
            f"package: {package_name}   # relative to this file's directory\n"
            f"sha256: {package_sha256}\n"
            "install_args: []\n"
            f'health_check: "{self.health_check}"\n'
        )

    def build_product(
        self,
        out_dir: Path,
        kernels: Sequence[str],
        *,
        version: str | None = None,
        headers_root: Path = DEFAULT_HEADERS_ROOT,
        log: Callable[[str], None] = print,
        compile_module: ModuleCompiler | None = None,
    ) -> Product:
        """Build modules, the package and product.yaml into ``out_dir``."""
        version = version or self.default_version
        compile_module = compile_module or self.build_module
        if not _kmod._VERSION_RE.match(version):
            raise BuildError(f"invalid version {version!r} (letters, digits, . + ~ - only)")
        if not kernels:
            raise BuildError("at least one --kernel is required")
        kernels = tuple(dict.fromkeys(kernels))
        for krel in kernels:  # every missing header directory before any compiling
            _kmod.headers_dir(krel, headers_root)
        mtime = _kmod.source_date_epoch()

        top = self.name
        files: dict[str, tuple[bytes, int]] = {f"{top}/VERSION": (f"{version}\n".encode(), 0o644)}
        for script in PACKAGE_SCRIPTS:
            files[f"{top}/{script}"] = ((self.directory / script).read_bytes(), 0o755)
        for krel in kernels:
            started = time.monotonic()
            ko = compile_module(krel, version, headers_root)
            log(
                f"built {self.module_name}.ko for {krel} ({len(ko)} bytes, {time.monotonic() - started:.1f}s)"
            )
            files[f"{top}/modules/{krel}/{self.module_name}.ko"] = (ko, 0o644)

        out_dir.mkdir(parents=True, exist_ok=True)
        package = out_dir / f"{self.name}-{version}-linux-x86_64.tar.gz"
        _kmod.write_reproducible_tar_gz(package, files, mtime)
        package_sha = str(_kmod.sha256_file(package))
        manifest = out_dir / MANIFEST_NAME
        manifest.write_text(
            self.render_product_yaml(version=version, package_name=package.name, package_sha256=package_sha)
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

    def main(self, argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(description=f"Build {self.description} (package + product.yaml).")
        parser.add_argument("--out", required=True, type=Path, help="output directory")
        parser.add_argument(
            "--kernel",
            action="append",
            required=True,
            metavar="RELEASE",
            help="kernel release to build for, e.g. 6.1.0-56-amd64 (repeatable)",
        )
        parser.add_argument(
            "--version", default=self.default_version, help="product version (default %(default)s)"
        )
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
            self.build_product(
                args.out, args.kernel, version=args.version, headers_root=args.headers_root, log=log
            )
        except BuildError as exc:
            print(f"build_product: error: {exc}", file=sys.stderr)
            return 1
        return 0
