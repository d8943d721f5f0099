"""The sample netguard traffic classifier: its product builder, health check and installer refusals,
and the captured console of the 2010 incident (netguard + sensor 1.1.0: booted, network lost).
Nothing here loads a module (see test_samples_sensor.py for how the scripts are fenced)."""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from orchestrator.core.crash_report import parse_console
from orchestrator.products import load_product, load_products

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "linux-netguard"
SENSOR_MODULE = SAMPLE.parent / "linux-sensor" / "module"
KERNEL_N = "6.1.0-56-amd64"
KERNEL_N1 = "6.1.0-55-amd64"


def _import(file_name: str, module_name: str) -> ModuleType:
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, SAMPLE / file_name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


product_builder = _import("build_product.py", "_testbed_netguard_build_product")


def fake_compiler(calls: list[str] | None = None) -> Callable[[str, str, Path], bytes]:
    def compile_module(kernel: str, version: str, headers_root: Path) -> bytes:
        if calls is not None:
            calls.append(kernel)
        return f"\x7fELF testbed_netguard {version} for {kernel}".encode()

    return compile_module


@pytest.fixture
def headers_root(tmp_path: Path) -> Path:
    root = tmp_path / "headers"
    for kernel in (KERNEL_N, KERNEL_N1):
        (root / f"linux-headers-{kernel}").mkdir(parents=True)
        (root / f"linux-headers-{kernel}" / "Makefile").write_text("# fake\n")
    return root


def build(out: Path, headers_root: Path, **kwargs: Any) -> Any:
    return product_builder.build_product(
        out,
        kwargs.pop("kernels", (KERNEL_N, KERNEL_N1)),
        headers_root=headers_root,
        log=lambda _line: None,
        compile_module=kwargs.pop("compile_module", fake_compiler()),
        **kwargs,
    )


def members(package: Path) -> dict[str, bytes]:
    with tarfile.open(package) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


# ---- the product ------------------------------------------------------------------------------


def test_product_yaml_has_the_dlp_agents_fields_and_loads_as_a_registered_product(tmp_path, headers_root):
    built = build(tmp_path / "products" / "netguard", headers_root)

    manifest = yaml.safe_load(built.manifest.read_text())
    assert manifest == {
        "name": "netguard",
        "version": "1.4.0",
        "os_family": "linux",
        "package": "netguard-1.4.0-linux-x86_64.tar.gz",
        "sha256": hashlib.sha256(built.package.read_bytes()).hexdigest(),
        "install_args": [],
        "health_check": "sh /var/lib/netguard/healthcheck.sh",
    }
    spec = importlib.util.spec_from_file_location(
        "_dlp_builder", SAMPLE.parent / "linux-dlp" / "build_product.py"
    )
    assert spec is not None and spec.loader is not None
    dlp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dlp)
    dlp_manifest = yaml.safe_load(
        dlp.render_product_yaml(version="2.3.0", package_name="p", package_sha256="0" * 64)
    )
    assert (
        set(dlp_manifest) == set(manifest) and dlp_manifest["install_args"] == []
    )  # the DLP agent's contract
    product = load_product(built.manifest)  # checks the pinned digest
    assert product.package_path == built.package.resolve()
    assert list(load_products(tmp_path / "products")) == ["netguard"]


def test_the_package_follows_the_linux_installer_contract(tmp_path, headers_root):
    calls: list[str] = []
    built = build(tmp_path / "out", headers_root, compile_module=fake_compiler(calls))

    files = members(built.package)
    assert sorted(files) == [
        "netguard/VERSION",
        "netguard/healthcheck.sh",
        "netguard/install.sh",
        f"netguard/modules/{KERNEL_N1}/testbed_netguard.ko",
        f"netguard/modules/{KERNEL_N}/testbed_netguard.ko",
        "netguard/uninstall.sh",
    ]
    assert files["netguard/VERSION"] == b"1.4.0\n"
    for script in ("install.sh", "uninstall.sh", "healthcheck.sh"):
        assert files[f"netguard/{script}"] == (SAMPLE / script).read_bytes()
    assert calls == [KERNEL_N, KERNEL_N1]
    with tarfile.open(built.package) as tar:
        assert {m.name.split("/")[0] for m in tar.getmembers()} == {"netguard"}
        assert tar.getmember("netguard/install.sh").mode == 0o755


def test_the_package_is_reproducible_and_the_version_changes_it(tmp_path, headers_root):
    first = build(tmp_path / "a", headers_root)
    second = build(tmp_path / "b", headers_root)
    other = build(tmp_path / "c", headers_root, version="1.4.1")

    assert first.package_sha256 == second.package_sha256
    assert first.manifest.read_text() == second.manifest.read_text()
    assert other.package_sha256 != first.package_sha256
    assert other.package.name == "netguard-1.4.1-linux-x86_64.tar.gz"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernels": ()}, "at least one --kernel"),
        ({"kernels": ("6.1.0-99-amd64",)}, "linux-headers-6.1.0-99-amd64 is missing"),
        ({"kernels": ("../etc",)}, "invalid kernel release"),
        ({"version": "1.4.0;reboot"}, "invalid version"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_built(tmp_path, headers_root, kwargs, message):
    calls: list[str] = []
    with pytest.raises(product_builder.BuildError, match=re.escape(message)):
        build(tmp_path / "out", headers_root, compile_module=fake_compiler(calls), **kwargs)
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_the_command_line_reports_errors_and_exit_status_1(tmp_path, capsys):
    status = product_builder.main(
        ["--out", str(tmp_path / "out"), "--kernel", KERNEL_N, "--headers-root", str(tmp_path), "-q"]
    )

    assert status == 1
    assert f"linux-headers-{KERNEL_N} is missing" in capsys.readouterr().err


# ---- the mark both products claim (the 2010 interaction, read from the sources) -----------------


def _define(source: Path, name: str) -> int:
    match = re.search(rf"^#define\s+{name}\s+(0x[0-9a-fA-F]+|\d+)", source.read_text(), re.MULTILINE)
    assert match is not None, f"{name} not defined in {source}"
    return int(match.group(1), 0)


def test_every_mark_netguard_writes_carries_the_bit_the_sensor_takes_for_containment():
    netguard = SAMPLE / "module" / "testbed_netguard.c"
    classified = _define(netguard, "NG_MARK_CLASSIFIED")
    shift = _define(netguard, "NG_CLASS_SHIFT")
    mask = _define(netguard, "NG_MARK_MASK")
    contained = _define(SENSOR_MODULE / "tbs.h", "TBS_CONTAIN_MARK")

    marks = [classified | (cls << shift) for cls in range(1, 6)]
    assert all(mark & ~mask == 0 for mark in marks)  # netguard stays inside its own byte
    assert all(mark & contained for mark in marks)  # ... which holds the sensor's bit
    assert "NF_DROP" in (SENSOR_MODULE / "contain.c").read_text()


def test_the_captured_console_shows_a_machine_that_runs_on_without_its_network():
    text = (SAMPLE / "captured" / "netguard-plus-sensor-network-cut-6.1.0-56.log").read_text(errors="replace")
    lines = text.splitlines()

    assert parse_console(text) is None  # no crash: the kernel runs on
    classified = next(i for i, line in enumerate(lines) if "first inbound packet classified" in line)
    ready = next(
        i for i, line in enumerate(lines) if "network containment ready (host not contained)" in line
    )
    dropping = next(i for i, line in enumerate(lines) if "dropping inbound packets marked contained" in line)
    assert classified < ready < dropping
    assert "mark 0x8100 on eth0" in lines[classified]  # class 1 (interactive: the testbed's SSH)
    assert "mark 0x8100 on eth0" in lines[dropping]
    assert "fast-init: loaded testbed_netguard (/etc/modules-load.d/netguard.conf)" in text


# ---- the scripts -----------------------------------------------------------------------------------


def health(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SAMPLE / "healthcheck.sh")],
        env={**os.environ, "TESTBED_NETGUARD_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("classifying", "status", "line"),
    [
        (
            "1",
            0,
            "netguard-health: ok: testbed_netguard 1.4.0 running: 40 inbound packets classified "
            "(interactive 31, web 0, infra 2, icmp 7, other 0)",
        ),
        (
            "0",
            1,
            "netguard-health: FAIL: testbed_netguard 1.4.0 is loaded but not classifying (classifying=0)",
        ),
    ],
)
def test_health_check_says_in_one_line_what_it_found(tmp_path, classifying, status, line):
    module = tmp_path / "sys" / "module" / "testbed_netguard"
    (module / "parameters").mkdir(parents=True)
    (module / "version").write_text("1.4.0\n")
    params = {"classifying": classifying, "packets_classified": "40", "interactive": "31", "web": "0"}
    params |= {"infra": "2", "icmp": "7", "other": "0"}
    for name, value in params.items():
        (module / "parameters" / name).write_text(f"{value}\n")

    result = health(tmp_path)

    assert (result.returncode, result.stdout.splitlines()) == (status, [line])


def test_health_check_fails_when_the_module_is_not_loaded(tmp_path):
    result = health(tmp_path)

    assert (result.returncode, result.stdout) == (
        1,
        "netguard-health: FAIL: testbed_netguard is not loaded\n",
    )


@pytest.fixture
def unpacked(tmp_path: Path, headers_root: Path) -> Path:
    built = build(tmp_path / "out", headers_root)
    with tarfile.open(built.package) as tar:
        tar.extractall(tmp_path / "pkg", filter="data")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "uname").write_text("#!/bin/sh\necho 9.9.9-not-packaged\n")
    (fake_bin / "uname").chmod(0o755)
    for tool in ("sh", "cat", "dirname", "id", "printf"):
        found = shutil.which(tool)
        assert found is not None
        (fake_bin / tool).symlink_to(found)
    return tmp_path / "pkg" / "netguard"


def install(package_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(package_dir / "install.sh"), *args],
        env={"PATH": str(package_dir.parents[1] / "bin"), "LC_ALL": "C"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_installer_takes_no_arguments(unpacked):
    result = install(unpacked, "--content", "/var/tmp/channel.bin")

    assert result.returncode == 2
    assert "unknown argument: --content" in result.stderr


def test_installer_refuses_a_kernel_it_has_no_module_for(unpacked):
    result = install(unpacked)

    assert result.returncode == 3
    assert "kernel 9.9.9-not-packaged is not supported by netguard 1.4.0" in result.stderr
    assert f"(supported kernel releases: {KERNEL_N1}, {KERNEL_N})" in result.stderr


# ---- a real compile (needs the kernel headers the images use) -----------------------------------


@pytest.mark.skipif(
    not (product_builder.DEFAULT_HEADERS_ROOT / f"linux-headers-{KERNEL_N}" / "Makefile").is_file(),
    reason=f"linux-headers-{KERNEL_N} is not installed",
)
def test_a_real_build_carries_the_product_version_and_is_byte_identical_when_repeated():
    ko = product_builder.build_module(KERNEL_N, "1.4.0")

    assert ko == product_builder.build_module(KERNEL_N, "1.4.0")
    assert product_builder._kmod._modinfo_value(ko, "version") == "1.4.0"
    assert product_builder._kmod._modinfo_value(ko, "vermagic").startswith(f"{KERNEL_N} ")
