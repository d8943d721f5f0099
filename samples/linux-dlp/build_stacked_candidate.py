#!/usr/bin/env python3
"""Build a throwaway candidate that installs products, then a sensor, then runs a script.

Until the testbed installs co-installed products itself, this is how the DLP
agent + sensor interaction is checked in a real guest:

    python samples/linux-dlp/build_stacked_candidate.py --out DIR \\
        --product OUT/dlp-agent-2.3.0-linux-x86_64.tar.gz \\
        [--sensor CAND/testbed-sensor-1.1.0-linux-x86_64.tar.gz --content CAND/content/channel-291.bin] \\
        [--then samples/activity/linux-activity.sh] [--health-check "sh /var/lib/dlp-agent/healthcheck.sh"]

The candidate's one package, ``stacked-linux-x86_64.tar.gz``, holds the given
packages and an install.sh that, in the guest, unpacks and installs each
product (no arguments), then the sensor (with the ``--content`` arguments the
testbed passes), then runs the --then script with sh. It stops at the first
step that fails, with that step's exit code. The products are installed in the
same boot as the sensor -- the testbed's products step will reboot in between.

Stdlib only; ``main(argv)`` is importable.
"""

import argparse
import hashlib
import importlib.util
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
KMOD_HELPERS = HERE.parent / "linux-sensor" / "kmod_package.py"
TOP = "stacked"
PACKAGE_NAME = f"{TOP}-linux-x86_64.tar.gz"


def _load_kmod_helpers() -> ModuleType:
    name = "_testbed_sensor_kmod_package"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, KMOD_HELPERS)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {KMOD_HELPERS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_kmod = _load_kmod_helpers()


def render_installer(products: Sequence[str], sensor: str | None, then: bool) -> str:
    """install.sh of the stacked package; arguments are forwarded to the sensor's installer."""
    lines = [
        "#!/bin/sh",
        "# Throwaway stacked installer (samples/linux-dlp/build_stacked_candidate.py).",
        "set -eu",
        'HERE=$(CDPATH=\'\' cd -- "$(dirname -- "$0")" && pwd)',
        "step() {",
        '\tpkg=$1; shift; dir=$(mktemp -d "${TMPDIR:-/var/tmp}/stacked.XXXXXX")',
        '\ttar -xzf "$HERE/packages/$pkg" -C "$dir" --no-same-owner',
        '\ttop=$(tar -tzf "$HERE/packages/$pkg" | head -n 1 | cut -d/ -f1)',
        '\techo "stacked: installing $pkg"',
        '\trc=0; (cd "$dir/$top" && sh ./install.sh "$@") || rc=$?',
        '\t[ "$rc" -eq 0 ] || { echo "stacked: $pkg failed with exit $rc" >&2; exit "$rc"; }',
        '\tSTACKED_LAST_DIR="$dir/$top"; export STACKED_LAST_DIR',
        "}",
    ]
    lines += [f"step {shlex.quote(name)}" for name in products]
    if sensor is not None:
        lines.append(f'step {shlex.quote(sensor)} "$@"')
    if then:
        lines += ['echo "stacked: running then.sh"', 'sh "$HERE/then.sh"']
    lines.append('echo "stacked: done"')
    return "\n".join(lines) + "\n"


def render_candidate_yaml(
    package_sha256: str, content: tuple[str, str] | None, health_check: str | None
) -> str:
    out = [
        "# Throwaway stacked candidate: products, then the sensor, in one install step.\n",
        "name: stacked\n",
        "version: 0.0.0\n",
        "artifacts:\n",
        "  - name: stacked-linux\n",
        "    kind: sensor_package\n",
        "    os_family: linux\n",
        f"    path: {PACKAGE_NAME}\n",
        f"    sha256: {package_sha256}\n",
    ]
    if health_check:
        out.append(f'    health_check: "{health_check}"\n')  # build_stacked refuses double quotes
    if content is not None:
        name, sha = content
        out += [
            f"  - name: {Path(name).stem}\n",
            "    kind: content\n",
            f"    path: content/{name}\n",
            f"    sha256: {sha}\n",
        ]
    return "".join(out)


def build_stacked(
    out_dir: Path,
    products: Sequence[Path],
    *,
    sensor: Path | None,
    content: Path | None,
    then: Path | None,
    health_check: str | None,
) -> Path:
    if not products and sensor is None:
        raise ValueError("nothing to install: give --product and/or --sensor")
    if (sensor is None) != (content is None):
        raise ValueError("--sensor and --content go together")
    if health_check is not None and '"' in health_check:
        raise ValueError("--health-check must not contain double quotes")
    packages = [*products, *([sensor] if sensor else [])]
    for path in [*packages, *([content] if content else []), *([then] if then else [])]:
        if not path.is_file():
            raise ValueError(f"not a file: {path}")
    if len({p.name for p in packages}) != len(packages):
        raise ValueError("two packages with one file name")
    installer = render_installer(
        [p.name for p in products], sensor.name if sensor else None, then is not None
    )
    files: dict[str, tuple[bytes, int]] = {f"{TOP}/install.sh": (installer.encode(), 0o755)}
    for path in packages:
        files[f"{TOP}/packages/{path.name}"] = (path.read_bytes(), 0o644)
    if then is not None:
        files[f"{TOP}/then.sh"] = (then.read_bytes(), 0o755)
    out_dir.mkdir(parents=True, exist_ok=True)
    package = out_dir / PACKAGE_NAME
    _kmod.write_reproducible_tar_gz(package, files, _kmod.source_date_epoch())
    content_entry = None
    if content is not None:
        (out_dir / "content").mkdir(exist_ok=True)
        data = content.read_bytes()
        (out_dir / "content" / content.name).write_bytes(data)
        content_entry = (content.name, hashlib.sha256(data).hexdigest())
    manifest = out_dir / "candidate.yaml"
    manifest.write_text(render_candidate_yaml(_kmod.sha256_file(package), content_entry, health_check))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--product", action="append", default=[], type=Path, help="product package (repeatable)"
    )
    parser.add_argument("--sensor", type=Path, help="sensor package, installed after the products")
    parser.add_argument("--content", type=Path, help="the sensor's content file")
    parser.add_argument("--then", type=Path, help="sh script run after the installs")
    parser.add_argument("--health-check", help="health_check of the stacked package")
    args = parser.parse_args(argv)
    try:
        manifest = build_stacked(
            args.out,
            args.product,
            sensor=args.sensor,
            content=args.content,
            then=args.then,
            health_check=args.health_check,
        )
    except ValueError as exc:
        print(f"build_stacked_candidate: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
