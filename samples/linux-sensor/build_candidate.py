#!/usr/bin/env python3
"""Build the sample "testbed-sensor" release candidate.

    python samples/linux-sensor/build_candidate.py --out DIR \\
        --kernel 6.1.0-56-amd64 --kernel 6.1.0-55-amd64 \\
        [--content good|zero-filled|new|activity|activity-malformed] \\
        [--sensor-version 1.1.0 --sensor-version 1.0.0 ...] [--version V] \\
        [--tested-kernel 6.1.0-56-amd64 ...] [--safe-mode-after N]

For every sensor version and kernel release the module in module/ is built
out of tree against /usr/src/linux-headers-<release> (one temporary build
directory per build). The version decides what the sensor knows and does:
1.1.0 and later understand compound rules (content ``new``), 1.0.0 overruns a
stack buffer on them; a version ending in ``-validating`` (e.g.
1.1.0-validating) checks every count, offset and size and rejects bad content
while staying loaded. Releases from 1.1.0 on look up a profile of the running
kernel build at load, from a table of the kernels the vendor tested
(--tested-kernel, default: every --kernel), and crash on a kernel without
one; they also bring network containment (see module/contain.c). With
--safe-mode-after N every package carries crash-loop protection: each start
goes through start-guard.sh, and after N starts in a row that the machine
died in, the sensor stays off ("safe mode") until it is installed again.
DIR then receives:

    testbed-sensor-<version>-linux-x86_64.tar.gz   one sensor package per version
        testbed-sensor/{install.sh,uninstall.sh,healthcheck.sh,start-guard.sh,VERSION}
        testbed-sensor/SAFE_MODE_AFTER                   with --safe-mode-after only
        testbed-sensor/modules/<release>/testbed_sensor.ko
    content/channel-<content version>.bin          content file
    candidate.yaml                                 candidate manifest

Without --sensor-version, --version (default 1.0.0) is the one sensor built,
as before. With them, the candidate's version is --version if given (it must
be one of them), else the newest.

The tarballs are reproducible (sorted entries, fixed mtime/owner, gzip mtime
0): identical inputs give identical digests.

!!! The module crashes the kernel on bad content.  Never load it on the
build host -- only inside disposable guest VMs.

Stdlib only; ``main(argv)`` is importable.
"""

import argparse
import hashlib
import importlib.util
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
MODULE_SRC_DIR = HERE / "module"
MODULE_NAME = "testbed_sensor"
PACKAGE_NAME = "testbed-sensor"
DEFAULT_VERSION = "1.0.0"
MODULE_SOURCES = ("Kbuild", "tbs.h", "main.c", "content.c", "match.c", "kprofile.c", "contain.c")
PACKAGE_SCRIPTS = ("install.sh", "uninstall.sh", "healthcheck.sh", "start-guard.sh")
#: Where install.sh puts healthcheck.sh in the guest; the manifest's health_check runs it.
HEALTH_CHECK = "sh /var/lib/testbed-sensor/healthcheck.sh"
#: A sensor version ending in this builds the validating sensor.
VALIDATING_SUFFIX = "-validating"

_SEMVER_RE = re.compile(r"^(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?:-([0-9A-Za-z][0-9A-Za-z.-]*))?$")


def _load_sibling(file_name: str, module_name: str) -> ModuleType:
    """Import a .py file from this directory (it is not a package)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, HERE / file_name)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {HERE / file_name}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[module_name]
        raise
    return mod


_kmod = _load_sibling("kmod_package.py", "_testbed_sensor_kmod_package")

# Re-exported: other samples build and package with these.
BuildError = _kmod.BuildError
DEFAULT_HEADERS_ROOT: Path = _kmod.DEFAULT_HEADERS_ROOT
DEFAULT_MTIME: int = _kmod.DEFAULT_MTIME
_VERSION_RE: re.Pattern[str] = _kmod._VERSION_RE
_KREL_RE: re.Pattern[str] = _kmod._KREL_RE
sha256_file = _kmod.sha256_file
_modinfo_value = _kmod._modinfo_value
write_reproducible_tar_gz = _kmod.write_reproducible_tar_gz
build_kmod = _kmod.build_kmod


def _load_make_content() -> ModuleType:
    return _load_sibling("make_content.py", "_testbed_sensor_make_content")


@dataclass(frozen=True)
class SensorRelease:
    """What a sensor version builds: the content features it knows, and whether it validates."""

    version: str
    feature_level: int  # 1: format 1 (1.0.0); 2: + compound rules (1.1.0 and later)
    validating: bool
    precedence: tuple[int, int, int, int]  # semver order: a release sorts after its pre-releases

    @property
    def make_vars(self) -> dict[str, str]:
        return {
            "TBS_VERSION": self.version,
            "TBS_FEATURE_LEVEL": str(self.feature_level),
            "TBS_VALIDATE": "1" if self.validating else "0",
        }


def sensor_release(version: str) -> SensorRelease:
    """Parse MAJOR.MINOR.PATCH[-suffix]; the build follows from it."""
    match = _SEMVER_RE.match(version)
    if match is None or len(version) > 64:
        raise BuildError(
            f"invalid sensor version {version!r}: expected MAJOR.MINOR.PATCH[-suffix], e.g. 1.1.0 "
            f"or 1.1.0{VALIDATING_SUFFIX}"
        )
    major, minor, patch = (int(part) for part in match.group(1, 2, 3))
    return SensorRelease(
        version=version,
        feature_level=2 if (major, minor) >= (1, 1) else 1,
        validating=version.endswith(VALIDATING_SUFFIX),
        precedence=(major, minor, patch, 0 if match.group(4) else 1),
    )


def module_make_vars(release: SensorRelease, tested_kernels: Sequence[str]) -> dict[str, str]:
    """The make variables of one build. Only releases with kernel profiles (feature level 2) get
    the tested kernels: a 1.0.0 module does not depend on them."""
    if release.feature_level < 2:
        return release.make_vars
    return {**release.make_vars, "TBS_TESTED_KERNELS": " ".join(tested_kernels)}


def build_module(
    kernel_release: str,
    version: str,
    headers_root: Path = DEFAULT_HEADERS_ROOT,
    tested_kernels: Sequence[str] | None = None,
    src_dir: Path = MODULE_SRC_DIR,
) -> bytes:
    """Build testbed_sensor.ko of one sensor version for one kernel release; return its bytes.

    ``tested_kernels``: the kernel releases whose profiles the module carries (1.1.0 and later);
    default: the one it is built for.
    """
    tested = (kernel_release,) if tested_kernels is None else tuple(tested_kernels)
    return bytes(
        build_kmod(
            kernel_release,
            module_name=MODULE_NAME,
            src_dir=src_dir,
            sources=MODULE_SOURCES,
            make_vars=module_make_vars(sensor_release(version), tested),
            headers_root=headers_root,
        )
    )


#: (kernel release, sensor version, headers root, tested kernel releases) -> the .ko's bytes
ModuleCompiler = Callable[[str, str, Path, tuple[str, ...]], bytes]


def resolve_tested_kernels(kernels: Sequence[str], tested_kernels: Sequence[str]) -> tuple[str, ...]:
    """The kernels in the profile table: every built kernel unless told otherwise, and only those
    (a profile for a kernel the package has no module for would be a mistake in the build)."""
    if not tested_kernels:
        return tuple(kernels)
    tested = tuple(dict.fromkeys(tested_kernels))
    unknown = [krel for krel in tested if krel not in kernels]
    if unknown:
        raise BuildError(
            f"--tested-kernel {', '.join(unknown)}: not among the --kernel releases built "
            f"({', '.join(kernels)})"
        )
    return tested


@dataclass(frozen=True)
class Candidate:
    out_dir: Path
    manifest: Path
    package: Path  # the package of the candidate's own version
    package_sha256: str
    content: Path
    content_sha256: str
    kernels: tuple[str, ...]
    version: str = DEFAULT_VERSION
    packages: tuple[tuple[str, Path, str], ...] = ()  # (sensor version, path, sha256), newest first
    tested_kernels: tuple[str, ...] = ()  # the kernels with a profile in 1.1.0 and later


def render_schema(schema: Mapping[str, Any], indent: str) -> str:
    """The content schema as block YAML (header_size, then one flow mapping per count field)."""
    lines = [
        f"{indent}schema:",
        f"{indent}  header_size: {schema['header_size']}",
        f"{indent}  count_fields:",
    ]
    for field in schema["count_fields"]:
        lines.append(
            f"{indent}    - {{name: {field['name']}, offset: {field['offset']}, size: {field['size']}}}"
        )
    return "\n".join(lines) + "\n"


def render_candidate_yaml(
    *,
    version: str,
    packages: Sequence[tuple[str, str, str]],
    content_name: str,
    content_path: str,
    content_sha256: str,
    content_schema: Mapping[str, Any],
) -> str:
    """candidate.yaml; ``packages`` are (sensor version, file name, sha256), newest first."""
    out = [f"name: {PACKAGE_NAME}\n", f"version: {version}\n", "artifacts:\n"]
    for sensor_version, package_name, package_sha256 in packages:
        # One package keeps the historical artifact name; several need one name each.
        name = "sensor-linux" if len(packages) == 1 else f"sensor-linux-{sensor_version}"
        out.append(
            f"  - name: {name}\n"
            "    kind: sensor_package\n"
            "    os_family: linux\n"
            f"    path: {package_name}\n"
            f"    sha256: {package_sha256}\n"
            f"    sensor_version: {sensor_version}\n"
            f'    health_check: "{HEALTH_CHECK}"\n'
        )
    out.append(
        f"  - name: {content_name}\n"
        "    kind: content\n"
        f"    path: {content_path}\n"
        f"    sha256: {content_sha256}\n"
    )
    out.append(render_schema(content_schema, "    "))
    return "".join(out)


def resolve_versions(version: str | None, sensor_versions: Sequence[str]) -> tuple[str, list[SensorRelease]]:
    """(the candidate's version, the releases to build, newest first)."""
    if not sensor_versions:
        sensor_versions = [version or DEFAULT_VERSION]
    duplicates = sorted({v for v in sensor_versions if list(sensor_versions).count(v) > 1})
    if duplicates:
        raise BuildError(f"--sensor-version given more than once: {', '.join(duplicates)}")
    releases = sorted((sensor_release(v) for v in sensor_versions), key=lambda r: r.precedence, reverse=True)
    if version is None:
        return releases[0].version, releases
    if version not in sensor_versions:
        raise BuildError(
            f"--version {version} is not one of the sensor versions built ({', '.join(sensor_versions)})"
        )
    return version, releases


def build_candidate(
    out_dir: Path,
    kernels: Sequence[str],
    *,
    content: str = "good",
    version: str | None = None,
    sensor_versions: Sequence[str] = (),
    content_version: int | None = None,
    rules: int | None = None,
    tested_kernels: Sequence[str] = (),
    safe_mode_after: int | None = None,
    headers_root: Path = DEFAULT_HEADERS_ROOT,
    log: Callable[[str], None] = print,
    compile_module: ModuleCompiler = build_module,
) -> Candidate:
    """Build modules, packages, content and candidate.yaml into ``out_dir``.

    ``tested_kernels``: the kernels the vendor tested, each one of ``kernels`` (default: all);
    sensors from 1.1.0 on crash on the others. ``safe_mode_after``: the sensor stays off after
    this many starts in a row that the machine died in (default: no crash-loop protection).
    """
    mc = _load_make_content()
    candidate_version, releases = resolve_versions(version, sensor_versions)
    if not kernels:
        raise BuildError("at least one --kernel is required")
    kernels = tuple(dict.fromkeys(kernels))  # de-duplicate, keep order
    for krel in (*kernels, *tested_kernels):
        if not _KREL_RE.match(krel):
            raise BuildError(f"invalid kernel release: {krel!r}")
    tested = resolve_tested_kernels(kernels, tested_kernels)
    if safe_mode_after is not None and not 1 <= safe_mode_after <= 100:
        raise BuildError(f"--safe-mode-after must be between 1 and 100, not {safe_mode_after}")
    if content not in mc.CONTENT_KINDS:
        raise BuildError(f"unknown content {content!r} (one of: {', '.join(mc.CONTENT_KINDS)})")
    cver = mc.CONTENT_KINDS[content] if content_version is None else content_version
    nrules = mc.DEFAULT_RULE_COUNT if rules is None else rules
    try:
        content_bytes = mc.build_content(content, content_version=cver, rule_count=nrules)
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    for krel in kernels:  # every missing header directory before any compiling
        _kmod.headers_dir(krel, headers_root)
    mtime = _kmod.source_date_epoch()

    out_dir.mkdir(parents=True, exist_ok=True)
    built: list[tuple[str, Path, str]] = []
    for release in releases:
        top = PACKAGE_NAME
        files: dict[str, tuple[bytes, int]] = {f"{top}/VERSION": (f"{release.version}\n".encode(), 0o644)}
        for script in PACKAGE_SCRIPTS:
            files[f"{top}/{script}"] = ((HERE / script).read_bytes(), 0o755)
        if safe_mode_after is not None:
            files[f"{top}/SAFE_MODE_AFTER"] = (f"{safe_mode_after}\n".encode(), 0o644)
        for krel in kernels:
            t0 = time.monotonic()
            ko = compile_module(krel, release.version, headers_root, tested)
            profile = ""
            if release.feature_level >= 2:
                profile = ", tested kernel" if krel in tested else ", UNTESTED kernel: no profile"
            log(
                f"built {MODULE_NAME}.ko {release.version} for {krel} "
                f"({len(ko)} bytes, {time.monotonic() - t0:.1f}s{profile})"
            )
            files[f"{top}/modules/{krel}/{MODULE_NAME}.ko"] = (ko, 0o644)
        package = out_dir / f"{PACKAGE_NAME}-{release.version}-linux-x86_64.tar.gz"
        write_reproducible_tar_gz(package, files, mtime)
        built.append((release.version, package, sha256_file(package)))
        log(f"wrote {package} (sha256 {built[-1][2]})")

    content_name = f"channel-{cver}"
    content_rel = f"content/{content_name}.bin"
    content_path = out_dir / content_rel
    content_path.parent.mkdir(parents=True, exist_ok=True)
    content_path.write_bytes(content_bytes)
    content_sha = hashlib.sha256(content_bytes).hexdigest()

    manifest = out_dir / "candidate.yaml"
    manifest.write_text(
        render_candidate_yaml(
            version=candidate_version,
            packages=[(v, path.name, sha) for v, path, sha in built],
            content_name=content_name,
            content_path=content_rel,
            content_sha256=content_sha,
            content_schema=mc.CONTENT_SCHEMA,
        )
    )
    log(f"wrote {content_path} ({content} content, {len(content_bytes)} bytes, sha256 {content_sha})")
    log(f"wrote {manifest} (candidate version {candidate_version})")
    own = next(entry for entry in built if entry[0] == candidate_version)
    return Candidate(
        out_dir=out_dir,
        manifest=manifest,
        package=own[1],
        package_sha256=own[2],
        content=content_path,
        content_sha256=content_sha,
        kernels=kernels,
        version=candidate_version,
        packages=tuple(built),
        tested_kernels=tested,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the sample testbed-sensor candidate (kernel modules, "
        "one package per sensor version, content file, candidate.yaml)."
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
        choices=tuple(_load_make_content().CONTENT_KINDS),
        default="good",
        help="content file to ship (default %(default)s; see make_content.py for each kind)",
    )
    parser.add_argument(
        "--sensor-version",
        action="append",
        default=[],
        metavar="VERSION",
        help="sensor version to package, e.g. 1.1.0, 1.0.0 or 1.1.0-validating (repeatable)",
    )
    parser.add_argument(
        "--version",
        default=None,
        help=f"the candidate's version; without --sensor-version also the one sensor built (default "
        f"{DEFAULT_VERSION}); with them, one of them (default: the newest)",
    )
    parser.add_argument(
        "--tested-kernel",
        action="append",
        default=[],
        metavar="RELEASE",
        help="a kernel release the vendor tested (repeatable; each one of the --kernel releases; default: "
        "every --kernel). Sensors from 1.1.0 on carry a profile of each and crash on the others",
    )
    parser.add_argument(
        "--content-version", type=int, default=None, help="content version (default: the kind's, e.g. 291)"
    )
    parser.add_argument(
        "--rules", type=int, default=None, help="number of scan rules in the content (default 12)"
    )
    parser.add_argument(
        "--safe-mode-after",
        type=int,
        default=None,
        metavar="N",
        help="crash-loop protection: the sensor stays off after N starts in a row that the machine "
        "died in, until it is installed again (default: none)",
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
        build_candidate(
            args.out,
            args.kernel,
            content=args.content,
            version=args.version,
            sensor_versions=args.sensor_version,
            content_version=args.content_version,
            rules=args.rules,
            tested_kernels=args.tested_kernel,
            safe_mode_after=args.safe_mode_after,
            headers_root=args.headers_root,
            log=log,
        )
    except BuildError as exc:
        print(f"build_candidate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
