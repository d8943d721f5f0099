"""The sample DLP agent: its product builder, the stacked-candidate helper, health check and installer
refusals. Nothing here loads a module (see test_samples_sensor.py for how the scripts are fenced)."""

import hashlib
import importlib.util
import os
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

from orchestrator.candidate import ArtifactKind, load_candidate

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "linux-dlp"
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


product_builder = _import("build_product.py", "_testbed_dlp_build_product")
stacker = _import("build_stacked_candidate.py", "_testbed_dlp_build_stacked_candidate")


def fake_compiler(calls: list[str] | None = None) -> Callable[[str, str, Path], bytes]:
    def compile_module(kernel: str, version: str, headers_root: Path) -> bytes:
        if calls is not None:
            calls.append(kernel)
        return f"\x7fELF testbed_dlp {version} for {kernel}".encode()

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


def test_product_yaml_names_the_package_its_digest_and_health_check(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root)

    product = yaml.safe_load(built.manifest.read_text())
    assert product == {
        "name": "dlp-agent",
        "version": "2.3.0",
        "os_family": "linux",
        "package": "dlp-agent-2.3.0-linux-x86_64.tar.gz",
        "sha256": hashlib.sha256(built.package.read_bytes()).hexdigest(),
        "install_args": [],
        "health_check": "sh /var/lib/dlp-agent/healthcheck.sh",
    }
    assert (built.manifest.parent / product["package"]) == built.package


def test_the_package_follows_the_linux_installer_contract(tmp_path, headers_root):
    calls: list[str] = []
    built = build(tmp_path / "out", headers_root, compile_module=fake_compiler(calls))

    files = members(built.package)
    assert sorted(files) == [
        "dlp-agent/VERSION",
        "dlp-agent/healthcheck.sh",
        "dlp-agent/install.sh",
        f"dlp-agent/modules/{KERNEL_N1}/testbed_dlp.ko",
        f"dlp-agent/modules/{KERNEL_N}/testbed_dlp.ko",
        "dlp-agent/uninstall.sh",
    ]
    assert files["dlp-agent/VERSION"] == b"2.3.0\n"
    assert calls == [KERNEL_N, KERNEL_N1]
    with tarfile.open(built.package) as tar:
        assert {m.name.split("/")[0] for m in tar.getmembers()} == {"dlp-agent"}
        assert tar.getmember("dlp-agent/install.sh").mode == 0o755


def test_the_package_is_reproducible(tmp_path, headers_root):
    first = build(tmp_path / "a", headers_root)
    second = build(tmp_path / "b", headers_root)

    assert first.package_sha256 == second.package_sha256
    assert first.manifest.read_text() == second.manifest.read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernels": ()}, "at least one --kernel"),
        ({"kernels": ("6.1.0-99-amd64",)}, "linux-headers-6.1.0-99-amd64 is missing"),
        ({"version": "2.3.0;reboot"}, "invalid version"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_built(tmp_path, headers_root, kwargs, message):
    calls: list[str] = []
    with pytest.raises(product_builder.BuildError, match=message):
        build(tmp_path / "out", headers_root, compile_module=fake_compiler(calls), **kwargs)
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_the_command_line_reports_errors_and_exit_status_1(tmp_path, capsys):
    status = product_builder.main(
        ["--out", str(tmp_path / "out"), "--kernel", KERNEL_N, "--headers-root", str(tmp_path), "-q"]
    )

    assert status == 1
    assert f"linux-headers-{KERNEL_N} is missing" in capsys.readouterr().err


# ---- the stacked candidate (products, then the sensor, in one install step) --------------------


def test_a_stacked_candidate_installs_products_then_the_sensor(tmp_path, headers_root):
    dlp = build(tmp_path / "dlp", headers_root)
    sensor = tmp_path / "testbed-sensor-1.1.0-linux-x86_64.tar.gz"
    sensor.write_bytes(b"sensor package")
    channel = tmp_path / "channel-291.bin"
    channel.write_bytes(b"TBSC content")
    then = tmp_path / "workload.sh"
    then.write_text("echo working\n")

    manifest = stacker.build_stacked(
        tmp_path / "stacked",
        [dlp.package],
        sensor=sensor,
        content=channel,
        then=then,
        health_check="sh /var/lib/testbed-sensor/healthcheck.sh",
    )

    candidate = load_candidate(manifest.parent)
    [package] = candidate.sensor_packages("linux")
    assert package.health_check == "sh /var/lib/testbed-sensor/healthcheck.sh"
    assert [(a.kind, a.path) for a in candidate.content_files()] == [
        (ArtifactKind.CONTENT, "content/channel-291.bin")
    ]
    files = members(candidate.path_of(package))
    assert files["stacked/packages/dlp-agent-2.3.0-linux-x86_64.tar.gz"] == dlp.package.read_bytes()
    assert files["stacked/packages/testbed-sensor-1.1.0-linux-x86_64.tar.gz"] == b"sensor package"
    assert files["stacked/then.sh"] == b"echo working\n"
    steps = [
        line
        for line in files["stacked/install.sh"].decode().splitlines()
        if line.startswith(("step ", "sh "))
    ]
    assert steps == [
        "step dlp-agent-2.3.0-linux-x86_64.tar.gz",
        'step testbed-sensor-1.1.0-linux-x86_64.tar.gz "$@"',
        'sh "$HERE/then.sh"',
    ]


def test_the_stacked_installer_runs_each_step_and_stops_at_the_first_failure(tmp_path):
    def package(name: str, script: str) -> Path:
        path = tmp_path / f"{name}.tar.gz"
        stacker._kmod.write_reproducible_tar_gz(path, {f"{name}/install.sh": (script.encode(), 0o755)}, 0)
        return path

    log = tmp_path / "log"
    first = package("first", f'echo "first $*" >> {log}\n')
    failing = package("failing", f'echo "failing $*" >> {log}\nexit 5\n')
    never = package("never", f'echo "never $*" >> {log}\n')
    manifest = stacker.build_stacked(
        tmp_path / "stacked", [first, failing, never], sensor=None, content=None, then=None, health_check=None
    )
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(manifest.parent / stacker.PACKAGE_NAME) as tar:
        tar.extractall(unpacked, filter="data")

    result = subprocess.run(
        ["sh", str(unpacked / "stacked" / "install.sh")],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 5
    assert "stacked: failing.tar.gz failed with exit 5" in result.stderr
    assert log.read_text() == "first \nfailing \n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"products": [], "sensor": None, "content": None}, "nothing to install"),
        ({"content": None}, "--sensor and --content go together"),
        ({"health_check": 'sh -c "true"'}, "must not contain double quotes"),
        ({"then": Path("/nonexistent/then.sh")}, "not a file: /nonexistent/then.sh"),
    ],
)
def test_the_stacked_helper_refuses_what_it_cannot_build(tmp_path, kwargs, message):
    sensor = tmp_path / "sensor.tar.gz"
    sensor.write_bytes(b"x")
    channel = tmp_path / "channel.bin"
    channel.write_bytes(b"y")
    arguments: dict[str, Any] = {
        "products": [],
        "sensor": sensor,
        "content": channel,
        "then": None,
        "health_check": None,
    } | kwargs

    with pytest.raises(ValueError, match=message):
        stacker.build_stacked(tmp_path / "out", arguments.pop("products"), **arguments)


# ---- the scripts -----------------------------------------------------------------------------------


def health(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SAMPLE / "healthcheck.sh")],
        env={**os.environ, "TESTBED_DLP_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("watching", "status", "line"),
    [
        (
            "1",
            0,
            "dlp-agent-health: ok: testbed_dlp 2.3.0 running: device control on the platform bus, "
            "7 devices tagged",
        ),
        (
            "0",
            1,
            "dlp-agent-health: FAIL: testbed_dlp 2.3.0 is loaded but not watching the platform bus "
            "(watching=0)",
        ),
    ],
)
def test_health_check_says_in_one_line_what_it_found(tmp_path, watching, status, line):
    module = tmp_path / "sys" / "module" / "testbed_dlp"
    (module / "parameters").mkdir(parents=True)
    (module / "version").write_text("2.3.0\n")
    (module / "parameters" / "watching").write_text(f"{watching}\n")
    (module / "parameters" / "devices_tagged").write_text("7\n")

    result = health(tmp_path)

    assert (result.returncode, result.stdout.splitlines()) == (status, [line])


def test_health_check_fails_when_the_module_is_not_loaded(tmp_path):
    result = health(tmp_path)

    assert (result.returncode, result.stdout) == (1, "dlp-agent-health: FAIL: testbed_dlp is not loaded\n")


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
    return tmp_path / "pkg" / "dlp-agent"


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
    assert "kernel 9.9.9-not-packaged is not supported by dlp-agent 2.3.0" in result.stderr
    assert f"(supported kernel releases: {KERNEL_N1}, {KERNEL_N})" in result.stderr


@pytest.mark.skipif(
    not (product_builder.DEFAULT_HEADERS_ROOT / f"linux-headers-{KERNEL_N}" / "Makefile").is_file(),
    reason=f"linux-headers-{KERNEL_N} is not installed",
)
def test_a_real_build_carries_the_product_version():
    ko = product_builder.build_module(KERNEL_N, "2.3.0")

    assert product_builder._kmod._modinfo_value(ko, "version") == "2.3.0"
    assert product_builder._kmod._modinfo_value(ko, "vermagic").startswith(f"{KERNEL_N} ")
