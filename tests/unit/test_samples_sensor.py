"""The sample sensor's candidate builder, content generator, health check and installer refusals.

Nothing here loads a module. The shell scripts run only on paths that read files or refuse their
input; the installer runs with a fake ``uname`` naming a kernel the package does not support and
a PATH without modprobe, so a mistake in a test cannot reach the host's kernel.
"""

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
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from orchestrator.candidate import ArtifactKind, load_candidate
from orchestrator.core.crash_report import CrashKind, parse_console

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "linux-sensor"
KERNEL_N = "6.1.0-56-amd64"
KERNEL_N1 = "6.1.0-55-amd64"
GOOD_SHA256 = "281672ee8ca868516f024ca4a9c56c5eacd46fa39cb93e34f0b8bb0260584669"


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


builder = _import("build_candidate.py", "_testbed_sensor_build_candidate")
content = _import("make_content.py", "_testbed_sensor_make_content")


def fake_compiler(
    calls: list[tuple[str, str]] | None = None, tested: list[tuple[str, ...]] | None = None
) -> Callable[[str, str, Path, tuple[str, ...]], bytes]:
    """Stands in for make: a deterministic 'module' per kernel release and sensor version."""

    def compile_module(
        kernel: str, version: str, headers_root: Path, tested_kernels: tuple[str, ...]
    ) -> bytes:
        if calls is not None:
            calls.append((kernel, version))
        if tested is not None:
            tested.append(tested_kernels)
        return f"\x7fELF testbed_sensor {version} for {kernel}".encode()

    return compile_module


@pytest.fixture
def headers_root(tmp_path: Path) -> Path:
    root = tmp_path / "headers"
    for kernel in (KERNEL_N, KERNEL_N1):
        (root / f"linux-headers-{kernel}").mkdir(parents=True)
        (root / f"linux-headers-{kernel}" / "Makefile").write_text("# fake\n")
    return root


def build(out: Path, headers_root: Path, **kwargs: Any) -> Any:
    return builder.build_candidate(
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


# ---- the candidate ---------------------------------------------------------------------------


def test_default_build_keeps_todays_layout_and_adds_the_health_check(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root)

    candidate = load_candidate(built.out_dir)  # checks every pinned digest
    assert candidate.version == "1.0.0"
    [package] = candidate.sensor_packages("linux")
    assert (package.name, package.path) == ("sensor-linux", "testbed-sensor-1.0.0-linux-x86_64.tar.gz")
    assert package.sensor_version == "1.0.0"
    assert package.health_check == "sh /var/lib/testbed-sensor/healthcheck.sh"
    [channel] = candidate.content_files()
    assert (channel.name, channel.path) == ("channel-291", "content/channel-291.bin")
    assert channel.sha256 == GOOD_SHA256
    assert sorted(p.name for p in built.out_dir.rglob("*") if p.is_file()) == [
        "candidate.yaml",
        "channel-291.bin",
        "testbed-sensor-1.0.0-linux-x86_64.tar.gz",
    ]


def test_one_package_per_sensor_version_and_the_candidate_names_the_newest(tmp_path, headers_root):
    calls: list[tuple[str, str]] = []
    built = build(
        tmp_path / "out",
        headers_root,
        content="new",
        sensor_versions=["1.0.0", "1.1.0-validating", "1.1.0"],
        compile_module=fake_compiler(calls),
    )

    candidate = load_candidate(built.out_dir)
    assert candidate.version == "1.1.0"
    assert candidate.facts().sensor_versions == {"linux": ("1.0.0", "1.1.0", "1.1.0-validating")}
    assert [(a.name, a.sensor_version, a.path) for a in candidate.sensor_packages("linux")] == [
        ("sensor-linux-1.1.0", "1.1.0", "testbed-sensor-1.1.0-linux-x86_64.tar.gz"),
        (
            "sensor-linux-1.1.0-validating",
            "1.1.0-validating",
            "testbed-sensor-1.1.0-validating-linux-x86_64.tar.gz",
        ),
        ("sensor-linux-1.0.0", "1.0.0", "testbed-sensor-1.0.0-linux-x86_64.tar.gz"),
    ]
    assert candidate.sensor_package("linux") == candidate.sensor_package("linux", "1.1.0")
    assert sorted(calls) == sorted(
        (k, v) for k in (KERNEL_N, KERNEL_N1) for v in ("1.0.0", "1.1.0", "1.1.0-validating")
    )
    for version, path, sha in built.packages:
        files = members(path)
        assert files["testbed-sensor/VERSION"] == f"{version}\n".encode()
        assert files[f"testbed-sensor/modules/{KERNEL_N}/testbed_sensor.ko"].endswith(
            f"{version} for {KERNEL_N}".encode()
        )
        assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_package_holds_the_scripts_the_installer_contract_needs(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root)

    files = members(built.package)
    assert sorted(files) == [
        "testbed-sensor/VERSION",
        "testbed-sensor/healthcheck.sh",
        "testbed-sensor/install.sh",
        f"testbed-sensor/modules/{KERNEL_N1}/testbed_sensor.ko",
        f"testbed-sensor/modules/{KERNEL_N}/testbed_sensor.ko",
        "testbed-sensor/start-guard.sh",
        "testbed-sensor/uninstall.sh",
    ]
    for script in ("install.sh", "uninstall.sh", "healthcheck.sh", "start-guard.sh"):
        assert files[f"testbed-sensor/{script}"] == (SAMPLE / script).read_bytes()


def test_crash_loop_protection_is_a_file_of_the_package_when_asked_for(tmp_path, headers_root):
    plain = build(tmp_path / "plain", headers_root)
    guarded = build(tmp_path / "guarded", headers_root, safe_mode_after=2)

    assert "testbed-sensor/SAFE_MODE_AFTER" not in members(plain.package)
    assert members(guarded.package)["testbed-sensor/SAFE_MODE_AFTER"] == b"2\n"
    assert guarded.package_sha256 != plain.package_sha256
    with pytest.raises(builder.BuildError, match="--safe-mode-after must be between 1 and 100, not 0"):
        build(tmp_path / "zero", headers_root, safe_mode_after=0)


def test_the_version_option_picks_the_candidates_release(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root, version="1.0.0", sensor_versions=["1.1.0", "1.0.0"])

    assert load_candidate(built.out_dir).version == "1.0.0"
    assert built.package.name == "testbed-sensor-1.0.0-linux-x86_64.tar.gz"


def test_the_manifest_declares_the_content_layout_the_variants_target(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root, content="activity")

    [channel] = load_candidate(built.out_dir).content_files()
    assert channel.schema_ is not None
    assert channel.schema_.header_size == content.HEADER_SIZE
    data = built.content.read_bytes()
    header = content.parse_header(data)
    values = {
        f.name: int.from_bytes(data[f.offset : f.offset + f.size], f.byteorder)
        for f in channel.schema_.count_fields
    }
    assert values == {
        "field_count": header.field_count,
        "rule_count": header.rule_count,
        "rules_size": header.rules_size,
    }
    assert values == {"field_count": 20, "rule_count": 13, "rules_size": len(data) - header.rules_offset}


def test_digests_are_reproducible_and_the_package_does_not_depend_on_the_content(tmp_path, headers_root):
    first = build(tmp_path / "a", headers_root, content="good", sensor_versions=["1.1.0", "1.0.0"])
    second = build(tmp_path / "b", headers_root, content="zero-filled", sensor_versions=["1.1.0", "1.0.0"])
    third = build(tmp_path / "c", headers_root, content="good", sensor_versions=["1.1.0", "1.0.0"])

    assert [sha for _, _, sha in first.packages] == [sha for _, _, sha in second.packages]
    assert first.content_sha256 == third.content_sha256 == GOOD_SHA256
    assert second.content_sha256 != first.content_sha256
    assert (first.out_dir / "candidate.yaml").read_text() == (third.out_dir / "candidate.yaml").read_text()


def test_every_kernel_is_a_tested_kernel_unless_told_otherwise(tmp_path, headers_root):
    tested: list[tuple[str, ...]] = []
    built = build(tmp_path / "out", headers_root, compile_module=fake_compiler(tested=tested))

    assert built.tested_kernels == (KERNEL_N, KERNEL_N1)
    assert tested == [(KERNEL_N, KERNEL_N1)] * 2


def test_tested_kernels_reach_every_build_and_the_log_names_the_untested_one(tmp_path, headers_root):
    calls: list[tuple[str, str]] = []
    tested: list[tuple[str, ...]] = []
    lines: list[str] = []

    built = builder.build_candidate(
        tmp_path / "out",
        (KERNEL_N, KERNEL_N1),
        sensor_versions=["1.1.0", "1.0.0"],
        tested_kernels=[KERNEL_N, KERNEL_N],
        headers_root=headers_root,
        log=lines.append,
        compile_module=fake_compiler(calls, tested),
    )

    assert built.tested_kernels == (KERNEL_N,)
    assert sorted(calls) == sorted((k, v) for k in (KERNEL_N, KERNEL_N1) for v in ("1.1.0", "1.0.0"))
    assert set(tested) == {(KERNEL_N,)}
    built_lines = [line for line in lines if line.startswith("built ")]
    assert built_lines[0].endswith(", tested kernel)")
    assert built_lines[1].endswith(", UNTESTED kernel: no profile)")
    assert all(line.endswith("s)") for line in built_lines[2:])  # 1.0.0 has no kernel profiles
    assert load_candidate(built.out_dir).version == "1.1.0"


@pytest.mark.parametrize(
    ("version", "has_profiles"), [("1.0.0", False), ("1.1.0", True), ("1.1.0-validating", True)]
)
def test_only_releases_with_kernel_profiles_are_built_with_the_tested_kernels(version, has_profiles):
    make_vars = builder.module_make_vars(builder.sensor_release(version), (KERNEL_N, KERNEL_N1))

    expected = builder.sensor_release(version).make_vars
    if has_profiles:
        expected = {**expected, "TBS_TESTED_KERNELS": f"{KERNEL_N} {KERNEL_N1}"}
    assert make_vars == expected


def test_the_tested_kernels_change_the_1_1_package_but_not_the_1_0_one(tmp_path, headers_root):
    def compiler(kernel: str, version: str, headers_root: Path, tested_kernels: tuple[str, ...]) -> bytes:
        make_vars = builder.module_make_vars(builder.sensor_release(version), tested_kernels)
        return f"{kernel} {sorted(make_vars.items())}".encode()

    every = build(tmp_path / "a", headers_root, sensor_versions=["1.1.0", "1.0.0"], compile_module=compiler)
    only_n = build(
        tmp_path / "b",
        headers_root,
        sensor_versions=["1.1.0", "1.0.0"],
        tested_kernels=[KERNEL_N],
        compile_module=compiler,
    )

    digests = {version: sha for version, _, sha in every.packages}
    assert [(v, sha == digests[v]) for v, _, sha in only_n.packages] == [("1.1.0", False), ("1.0.0", True)]


def test_the_command_line_passes_tested_kernels_and_refuses_unknown_ones(tmp_path, capsys):
    status = builder.main(
        ["--out", str(tmp_path / "out"), "--kernel", KERNEL_N, "--tested-kernel", KERNEL_N1, "-q"]
    )

    assert status == 1
    assert f"--tested-kernel {KERNEL_N1}: not among the --kernel releases built ({KERNEL_N})" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


def test_source_date_epoch_changes_the_package_digest(tmp_path, headers_root, monkeypatch):
    first = build(tmp_path / "a", headers_root)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = build(tmp_path / "b", headers_root)

    assert first.package_sha256 != second.package_sha256
    with tarfile.open(second.package) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


@pytest.mark.parametrize(
    ("version", "level", "validating"),
    [
        ("1.0.0", 1, False),
        ("0.9.7", 1, False),
        ("1.1.0", 2, False),
        ("1.1.0-rc1", 2, False),
        ("2.0.0", 2, False),
        ("1.1.0-validating", 2, True),
        ("1.0.0-validating", 1, True),
    ],
)
def test_the_version_decides_what_the_sensor_knows(version, level, validating):
    release = builder.sensor_release(version)

    assert (release.feature_level, release.validating) == (level, validating)
    assert release.make_vars == {
        "TBS_VERSION": version,
        "TBS_FEATURE_LEVEL": str(level),
        "TBS_VALIDATE": "1" if validating else "0",
    }


def test_a_release_sorts_after_its_prereleases():
    versions = ["1.1.0-validating", "1.0.0", "1.1.0", "1.0.1"]
    _candidate_version, releases = builder.resolve_versions(None, versions)

    assert [r.version for r in releases] == ["1.1.0", "1.1.0-validating", "1.0.1", "1.0.0"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sensor_versions": ["1.0"]}, "invalid sensor version '1.0'"),
        ({"sensor_versions": ["dev"]}, "expected MAJOR.MINOR.PATCH"),
        ({"sensor_versions": ["1.0.0;reboot"]}, "invalid sensor version"),
        ({"version": "../1.0.0"}, "invalid sensor version"),
        ({"sensor_versions": ["1.1.0", "1.1.0"]}, "given more than once: 1.1.0"),
        ({"version": "2.0.0", "sensor_versions": ["1.1.0"]}, "--version 2.0.0 is not one of"),
        ({"content": "half"}, "unknown content 'half'"),
        ({"kernels": ()}, "at least one --kernel"),
        ({"kernels": ("6.1.0-99-amd64",)}, "linux-headers-6.1.0-99-amd64 is missing"),
        ({"kernels": ("../etc",)}, "invalid kernel release"),
        ({"tested_kernels": ["6.1.0-99-amd64"]}, "--tested-kernel 6.1.0-99-amd64: not among the --kernel"),
        ({"kernels": (KERNEL_N,), "tested_kernels": [KERNEL_N1]}, "not among the --kernel releases built"),
        ({"tested_kernels": ["6.1.0-56-amd64;reboot"]}, "invalid kernel release"),
        ({"rules": 0}, "rule_count must be 1.."),
        ({"content_version": -1}, "content_version out of range"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_built(tmp_path, headers_root, kwargs, message):
    calls: list[tuple[str, str]] = []
    with pytest.raises(builder.BuildError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build(tmp_path / "out", headers_root, compile_module=fake_compiler(calls), **kwargs)
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_the_command_line_reports_errors_and_exit_status_1(tmp_path, capsys):
    status = builder.main(
        ["--out", str(tmp_path / "out"), "--kernel", KERNEL_N, "--headers-root", str(tmp_path), "-q"]
    )

    assert status == 1
    assert f"linux-headers-{KERNEL_N} is missing" in capsys.readouterr().err


def test_the_command_line_offers_every_content_kind(capsys):
    with pytest.raises(SystemExit):
        builder.main(["--help"])

    help_text = capsys.readouterr().out
    for kind in content.CONTENT_KINDS:
        assert kind in help_text
    assert "--sensor-version" in help_text
    assert "--tested-kernel" in help_text


# ---- the content --------------------------------------------------------------------------------


def test_good_content_is_the_same_bytes_as_before():
    assert hashlib.sha256(content.build_content("good")).hexdigest() == GOOD_SHA256


@pytest.mark.parametrize("kind", sorted(content.CONTENT_KINDS))
def test_every_kind_is_deterministic_and_carries_its_version(kind):
    first, second = content.build_content(kind), content.build_content(kind)

    assert first == second
    if kind == "zero-filled":
        assert first == bytes(len(content.build_content("good")))
    else:
        header = content.parse_header(first)
        assert header.content_version == content.CONTENT_KINDS[kind]
        assert header.rules_offset + header.rules_size == len(first)


def test_new_content_uses_compound_rules_only_sensor_1_1_knows():
    data = content.build_content("new")

    assert content.parse_header(data).flags == content.FLAG_COMPOUND_RULES
    counts = [len(rule.criteria) for rule in content.parse_rules(data)]
    assert counts[1] == 12  # overruns 1.0.0's 4-entry stack buffer by 8 criteria, 128 bytes
    assert max(counts) <= content.MAX_COMPOUND_CRITERIA
    assert all(
        field < content.SENSOR_INPUTS for rule in content.parse_rules(data) for field, _, _ in rule.criteria
    )


@pytest.mark.parametrize(("kind", "second_input"), [("activity", 1), ("activity-malformed", 3)])
def test_the_activity_rule_matches_the_trigger_process(kind, second_input):
    rules = content.parse_rules(content.build_content(kind))

    *scan, exec_rule = rules
    assert all(rule.event == content.EVENT_SCAN for rule in scan)
    assert (exec_rule.rule_id, exec_rule.event) == (200, content.EVENT_EXEC)
    assert exec_rule.criteria[0] == (0, content.OP_EQ, content.fnv1a32(b"testbed-trigger"))
    assert exec_rule.criteria[1][0] == second_input
    assert len(content.TRIGGER_NAME) == 15  # a whole task comm: the kernel keeps 15 bytes
    assert (
        f"TRIGGER={content.TRIGGER_NAME}\n" in (SAMPLE.parent / "activity" / "linux-activity.sh").read_text()
    )


def test_fnv1a32_matches_the_published_test_vectors():
    assert content.fnv1a32(b"") == 0x811C9DC5
    assert content.fnv1a32(b"a") == 0xE40C292C
    assert content.fnv1a32(b"foobar") == 0xBF9CF968


# ---- the health check ---------------------------------------------------------------------------


def fake_sysfs(root: Path, **params: str) -> None:
    module = root / "sys" / "module" / "testbed_sensor"
    (module / "parameters").mkdir(parents=True)
    (module / "version").write_text("1.1.0-validating\n")
    for name, value in params.items():
        (module / "parameters" / name).write_text(f"{value}\n")


def health(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SAMPLE / "healthcheck.sh")],
        env={**os.environ, "TESTBED_SENSOR_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("params", "status", "line"),
    [
        (
            {
                "content_state": "active",
                "rules_loaded": "13",
                "content_version": "293",
                "execs_seen": "41",
                "exec_matched": "1",
            },
            0,
            "testbed-sensor-health: ok: testbed_sensor 1.1.0-validating running: 13 rules from content "
            "version 293, 41 execs seen, 1 exec rule matches",
        ),
        (
            {"content_state": "rejected", "content_error": "bad magic 00000000"},
            0,
            "testbed-sensor-health: ok: testbed_sensor 1.1.0-validating running with its content "
            "rejected: bad magic 00000000",
        ),
        (
            {"content_state": "active", "rules_loaded": "0"},
            1,
            "testbed-sensor-health: FAIL: testbed_sensor 1.1.0-validating is active but reports "
            "rules_loaded=0",
        ),
        (
            {"content_state": "none"},
            1,
            "testbed-sensor-health: FAIL: testbed_sensor 1.1.0-validating is loaded but its content state is "
            "'none'",
        ),
    ],
)
def test_health_check_says_in_one_line_what_it_found(tmp_path, params, status, line):
    fake_sysfs(tmp_path, **params)

    result = health(tmp_path)

    assert (result.returncode, result.stdout.splitlines()) == (status, [line])


def test_health_check_fails_when_the_module_is_not_loaded(tmp_path):
    result = health(tmp_path)

    assert (result.returncode, result.stdout) == (
        1,
        "testbed-sensor-health: FAIL: testbed_sensor is not loaded\n",
    )


def test_health_check_names_safe_mode(tmp_path):
    (tmp_path / "var/lib/testbed-sensor").mkdir(parents=True)
    (tmp_path / "var/lib/testbed-sensor/safe-mode").write_text("2\n")

    result = health(tmp_path)

    assert (result.returncode, result.stdout) == (
        1,
        "testbed-sensor-health: FAIL: testbed_sensor is in safe mode: its last 2 starts never finished "
        "(the machine went down each time); it stays off until reinstalled\n",
    )


# ---- crash-loop protection: start-guard.sh, with a stub modprobe (nothing reaches the kernel) -----


@pytest.fixture
def guarded_root(tmp_path: Path) -> Path:
    """A guest root with a safe-mode limit of 2, and a bin dir whose modprobe records its calls and
    exits with the status in ``modprobe-status`` (a crash at start-up: the guard never resumes)."""
    root = tmp_path / "root"
    (root / "var/lib/testbed-sensor").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "var/lib/testbed-sensor/safe-mode-after").write_text("2\n")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    status = f"$(cat {root}/modprobe-status 2>/dev/null || echo 0)"
    (fake_bin / "modprobe").write_text(f'#!/bin/sh\necho "$*" >> {root}/modprobe-calls\nexit "{status}"\n')
    (fake_bin / "modprobe").chmod(0o755)
    for tool in ("sh", "cat", "rm", "sync", "printf"):
        found = shutil.which(tool)
        assert found is not None
        (fake_bin / tool).symlink_to(found)
    return root


def start(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SAMPLE / "start-guard.sh"), "debug=1"],
        env={"PATH": str(root.parent / "bin"), "LC_ALL": "C", "TESTBED_SENSOR_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_a_start_that_returns_clears_its_count_loaded_or_refused(guarded_root):
    state = guarded_root / "var/lib/testbed-sensor"
    (state / "unfinished-starts").write_text("1\n")  # one crash before: not yet safe mode

    loaded = start(guarded_root)
    (guarded_root / "modprobe-status").write_text("1\n")
    refused = start(guarded_root)

    assert (loaded.returncode, refused.returncode) == (0, 1)
    assert (guarded_root / "modprobe-calls").read_text().splitlines() == [
        "--ignore-install testbed_sensor debug=1"
    ] * 2
    assert not (state / "unfinished-starts").exists() and not (state / "safe-mode").exists()


def test_after_as_many_unfinished_starts_as_the_limit_the_sensor_stays_off_and_says_so(guarded_root):
    state = guarded_root / "var/lib/testbed-sensor"
    (state / "unfinished-starts").write_text("2\n")  # the machine died in the last two starts

    result = start(guarded_root)

    assert result.returncode == 1
    assert not (guarded_root / "modprobe-calls").exists()  # not started
    assert (state / "safe-mode").read_text() == "2\n"
    assert (guarded_root / "dev/kmsg").read_text() == (
        "testbed-sensor: safe mode: the last 2 starts never finished (the machine went down each "
        "time); not starting until reinstalled\n"
    )


def test_a_start_is_counted_before_the_module_loads(guarded_root):
    """What a crash inside the load leaves behind: modprobe sees the count already written."""
    stub = guarded_root.parent / "bin" / "modprobe"
    stub.unlink()
    counted = guarded_root / "var/lib/testbed-sensor/unfinished-starts"
    stub.write_text(f"#!/bin/sh\ncat {counted} > {guarded_root}/seen-by-modprobe\nexit 0\n")
    stub.chmod(0o755)

    assert start(guarded_root).returncode == 0
    assert (guarded_root / "seen-by-modprobe").read_text() == "1\n"


# ---- the installer's refusals ------------------------------------------------------------------


@pytest.fixture
def unpacked(tmp_path: Path, headers_root: Path) -> Path:
    """The package unpacked, and a bin dir whose uname names a kernel the package lacks."""
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
    return tmp_path / "pkg" / "testbed-sensor"


def install(package_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(package_dir / "install.sh"), *args],
        env={"PATH": str(package_dir.parents[1] / "bin"), "LC_ALL": "C"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ((), 2, "--content FILE is required"),
        (("--content",), 2, "--content needs a FILE argument"),
        (("--content", "/nonexistent/channel.bin"), 2, "content file not found: /nonexistent/channel.bin"),
        (("--bogus",), 2, "unknown argument: --bogus"),
    ],
)
def test_installer_refuses_bad_arguments(unpacked, args, status, message):
    result = install(unpacked, *args)

    assert result.returncode == status
    assert message in result.stderr


def test_installer_accepts_an_empty_content_file_judging_it_is_the_sensors_job(unpacked, tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")

    result = install(unpacked, "--content", str(empty))

    # Past the content checks, it stops at the kernel: this host's fake kernel is not packaged.
    assert result.returncode == 3
    assert "kernel 9.9.9-not-packaged is not supported by testbed-sensor 1.0.0" in result.stderr
    assert f"(supported kernel releases: {KERNEL_N1}, {KERNEL_N})" in result.stderr


def test_the_manifest_is_plain_yaml(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root, sensor_versions=["1.1.0", "1.0.0"])

    data = yaml.safe_load(io.StringIO(built.manifest.read_text()))
    assert [a["kind"] for a in data["artifacts"]] == ["sensor_package", "sensor_package", "content"]
    assert [a.get("sensor_version") for a in data["artifacts"]] == ["1.1.0", "1.0.0", None]
    assert {a.kind for a in load_candidate(built.out_dir).manifest.artifacts} == set(ArtifactKind)


# ---- a real compile (needs the kernel headers the images use) -----------------------------------


@pytest.mark.skipif(
    not (builder.DEFAULT_HEADERS_ROOT / f"linux-headers-{KERNEL_N}" / "Makefile").is_file(),
    reason=f"linux-headers-{KERNEL_N} is not installed",
)
def test_real_builds_carry_their_version_and_are_byte_identical_when_repeated():
    validating = builder.build_module(KERNEL_N, "1.1.0-validating")
    again = builder.build_module(KERNEL_N, "1.1.0-validating")
    old = builder.build_module(KERNEL_N, "1.0.0")

    assert validating == again
    assert builder._modinfo_value(validating, "version") == "1.1.0-validating"
    assert builder._modinfo_value(old, "version") == "1.0.0"
    assert builder._modinfo_value(old, "vermagic").startswith(f"{KERNEL_N} ")
    assert builder._modinfo_value(old, "firmware") == "testbed-sensor/channel.bin"
    assert validating != old


@pytest.mark.skipif(
    not all(
        (builder.DEFAULT_HEADERS_ROOT / f"linux-headers-{k}" / "Makefile").is_file()
        for k in (KERNEL_N, KERNEL_N1)
    ),
    reason=f"linux-headers-{KERNEL_N} and -{KERNEL_N1} are not both installed",
)
def test_real_1_1_builds_carry_the_tested_kernels_profile_table_and_1_0_has_none():
    untested_n1 = builder.build_module(KERNEL_N1, "1.1.0", tested_kernels=(KERNEL_N,))
    tested_n1 = builder.build_module(KERNEL_N1, "1.1.0", tested_kernels=(KERNEL_N, KERNEL_N1))
    old = builder.build_module(KERNEL_N1, "1.0.0", tested_kernels=(KERNEL_N,))

    def table(ko: bytes) -> set[str]:
        """The kernel releases among the module's constant strings (not its build note)."""
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "m.ko").write_bytes(ko)
            strings = subprocess.run(
                ["readelf", "-p", ".rodata.str1.1", str(Path(tmp) / "m.ko")],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
        return {
            k for k in (KERNEL_N, KERNEL_N1) if re.search(rf"\]\s+{re.escape(k)}$", strings, re.MULTILINE)
        }

    assert table(untested_n1) == {KERNEL_N}  # built for N-1, but only N has a profile
    assert table(tested_n1) == {KERNEL_N, KERNEL_N1}
    assert b"tbs_apply_kernel_profile" in untested_n1
    assert b"tbs_apply_kernel_profile" not in old  # 1.0.0 has no profile code
    assert builder._modinfo_value(untested_n1, "vermagic").startswith(f"{KERNEL_N1} ")
    assert b"\0parm=contain_drops:" in untested_n1  # network containment's status
    assert b"\0parm=contain_drops:" not in old


# ---- the captured consoles (real guests) ---------------------------------------------------------


def test_the_untested_kernel_console_is_a_null_dereference_in_the_profile_code():
    text = (SAMPLE / "captured" / "untested-kernel-profile-oops-6.1.0-55.log").read_text(errors="replace")

    report = parse_console(text)

    assert report is not None
    assert report.kind is CrashKind.NULL_DEREF
    assert report.title == "BUG: kernel NULL pointer dereference in tbs_apply_kernel_profile [testbed_sensor]"
    assert report.first_line == "BUG: kernel NULL pointer dereference, address: 0000000000000008"
    assert "6.1.0-55-amd64" in text and "Comm: modprobe" in text
    assert "Kernel panic" in text and "panic+" not in text  # an oops made fatal by oops=panic, no panic()
