"""The testbed-faults sample: its candidate builder, health check and installer's refusals.

Nothing here loads a module. The shell scripts run only on paths that read files or refuse
their input, and the installer runs with a PATH that has no modprobe, so a mistake in a test
cannot reach the host's kernel.
"""

import gzip
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

import pytest

from orchestrator.candidate import ArtifactKind, load_candidate
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "linux-faults"
KERNEL_N = "6.1.0-56-amd64"
KERNEL_N1 = "6.1.0-55-amd64"


def _import_builder() -> ModuleType:
    name = "_testbed_faults_build_candidate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SAMPLE / "build_candidate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


builder = _import_builder()


def fake_compiler(calls: list[str] | None = None) -> Callable[[str, str, Path], bytes]:
    """Stands in for make: a deterministic 'module' per kernel release and version."""

    def compile_module(kernel: str, version: str, headers_root: Path) -> bytes:
        if calls is not None:
            calls.append(kernel)
        return f"\x7fELF testbed_faults for {kernel} version {version}".encode()

    return compile_module


@pytest.fixture
def headers_root(tmp_path: Path) -> Path:
    root = tmp_path / "headers"
    for kernel in (KERNEL_N, KERNEL_N1):
        (root / f"linux-headers-{kernel}").mkdir(parents=True)
        (root / f"linux-headers-{kernel}" / "Makefile").write_text("# fake\n")
    return root


def build(out: Path, headers_root: Path, fault: str, delay_s: int | None = None, **kwargs: object):
    return builder.build_candidate(
        out,
        kwargs.pop("kernels", (KERNEL_N, KERNEL_N1)),
        fault=fault,
        delay_s=delay_s,
        headers_root=headers_root,
        log=lambda _line: None,
        compile_module=kwargs.pop("compile_module", fake_compiler()),
        **kwargs,
    )


def content_of(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


# ---- the candidate ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(builder.FAULTS))
def test_every_fault_builds_a_candidate_the_testbed_accepts(tmp_path, headers_root, fault):
    built = build(tmp_path / "out", headers_root, fault)

    candidate = load_candidate(built.out_dir)  # checks every pinned digest
    package = candidate.sensor_package("linux")
    assert package is not None
    assert package.path == "testbed-faults-1.0.0-linux-x86_64.tar.gz"
    assert package.health_check == "sh /var/lib/testbed-faults/healthcheck.sh"
    assert package.sha256 == hashlib.sha256(built.package.read_bytes()).hexdigest()
    [content] = candidate.content_files()
    assert (content.name, content.kind, content.path) == (
        f"faults-{fault}",
        ArtifactKind.CONTENT,
        "content/faults.conf",
    )
    assert content.sha256 == hashlib.sha256(built.content.read_bytes()).hexdigest()
    assert content_of(built.content)["fault"] == fault


@pytest.mark.parametrize(
    ("fault", "delay_s", "expected"),
    [
        ("delayed-panic", None, {"fault": "delayed-panic", "delay_s": "40"}),
        ("delayed-panic", 60, {"fault": "delayed-panic", "delay_s": "60"}),
        ("irq-spin", None, {"fault": "irq-spin", "delay_s": "20"}),
        ("net-drop", None, {"fault": "net-drop", "delay_s": "5"}),
        ("warn", None, {"fault": "warn", "delay_s": "5"}),
        ("reset-loop", None, {"fault": "reset-loop", "delay_s": "3"}),
        ("reset-loop", 0, {"fault": "reset-loop", "delay_s": "0"}),
        ("warn", 3600, {"fault": "warn", "delay_s": "3600"}),
        ("none", None, {"fault": "none"}),
        ("sysctl-off", None, {"fault": "sysctl-off"}),
    ],
)
def test_content_carries_the_fault_and_its_delay(tmp_path, headers_root, fault, delay_s, expected):
    built = build(tmp_path / "out", headers_root, fault, delay_s)
    assert content_of(built.content) == expected
    assert built.delay_s == (int(expected["delay_s"]) if "delay_s" in expected else None)


def test_faults_differ_only_in_content(tmp_path, headers_root):
    panic = build(tmp_path / "panic", headers_root, "delayed-panic")
    control = build(tmp_path / "none", headers_root, "none")
    assert panic.package.read_bytes() == control.package.read_bytes()
    assert panic.content_sha256 != control.content_sha256


def test_package_is_reproducible_and_complete(tmp_path, headers_root):
    first = build(tmp_path / "a", headers_root, "warn")
    second = build(tmp_path / "b", headers_root, "warn")
    assert first.package.read_bytes() == second.package.read_bytes()

    raw = first.package.read_bytes()
    assert int.from_bytes(raw[4:8], "little") == 0  # gzip header mtime
    with tarfile.open(first.package) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 1721362140)}
        assert {m.name: m.mode for m in members if m.isfile()} == {
            "testbed-faults/VERSION": 0o644,
            "testbed-faults/healthcheck.sh": 0o755,
            "testbed-faults/install.sh": 0o755,
            "testbed-faults/uninstall.sh": 0o755,
            f"testbed-faults/modules/{KERNEL_N}/testbed_faults.ko": 0o644,
            f"testbed-faults/modules/{KERNEL_N1}/testbed_faults.ko": 0o644,
        }
        for script in builder.PACKAGE_SCRIPTS:
            packed = tar.extractfile(f"testbed-faults/{script}")
            assert packed is not None
            assert packed.read() == (SAMPLE / script).read_bytes()
    assert gzip.decompress(raw)  # a whole, valid stream


def test_source_date_epoch_sets_the_entry_times(tmp_path, headers_root, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    built = build(tmp_path / "out", headers_root, "none")
    with tarfile.open(built.package) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


def test_a_changed_digest_is_caught_by_the_testbed(tmp_path, headers_root):
    built = build(tmp_path / "out", headers_root, "delayed-panic")
    built.content.write_text("fault=none\n")
    with pytest.raises(ConfigurationError, match=r"artifacts\[1\]\.sha256"):
        load_candidate(built.out_dir)


def test_missing_headers_are_named_before_anything_is_compiled(tmp_path, headers_root):
    calls: list[str] = []
    with pytest.raises(builder.BuildError, match=r"linux-headers-6\.1\.0-99-amd64 is missing"):
        build(
            tmp_path / "out",
            headers_root,
            "warn",
            kernels=(KERNEL_N, "6.1.0-99-amd64"),
            compile_module=fake_compiler(calls),
        )
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_each_kernel_is_compiled_once(tmp_path, headers_root):
    calls: list[str] = []
    build(
        tmp_path / "out",
        headers_root,
        "warn",
        kernels=(KERNEL_N, KERNEL_N1, KERNEL_N),
        compile_module=fake_compiler(calls),
    )
    assert calls == [KERNEL_N, KERNEL_N1]


# ---- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fault", "none", "--delay-s", "3"], "--delay-s makes no sense for fault 'none'"),
        (["--fault", "sysctl-off", "--delay-s", "0"], "--delay-s makes no sense for fault 'sysctl-off'"),
        (["--fault", "warn", "--delay-s", "-1"], "--delay-s must be 0..3600 seconds, got -1"),
        (["--fault", "delayed-panic", "--delay-s", "3601"], "--delay-s must be 0..3600 seconds, got 3601"),
        (["--fault", "warn", "--version", "1.0 beta"], "invalid version '1.0 beta'"),
        (["--fault", "warn", "--kernel", "../../etc"], "invalid kernel release: '../../etc'"),
        (["--fault", "warn", "--kernel", "6.1.0-99-amd64"], "kernel headers for 6.1.0-99-amd64 not found"),
    ],
)
def test_main_refuses_bad_arguments_and_writes_nothing(tmp_path, headers_root, capsys, extra, message):
    out = tmp_path / "out"
    argv = ["--out", str(out), "--kernel", KERNEL_N, "--headers-root", str(headers_root), "-q", *extra]
    assert builder.main(argv) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fault", "explode"], "invalid choice: 'explode'"),
        ([], "the following arguments are required: --fault"),
        (["--fault", "warn", "--delay-s", "soon"], "invalid int value: 'soon'"),
    ],
)
def test_main_rejects_unusable_command_lines(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        builder.main(["--out", str(tmp_path / "out"), "--kernel", KERNEL_N, *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_fault_list_is_the_same_in_module_installer_and_builder():
    source = (SAMPLE / "module" / "testbed_faults.c").read_text()
    names_block = re.search(r"tbf_fault_names\[\] = \{(.*?)\};", source, re.DOTALL)
    assert names_block is not None
    assert set(re.findall(r'"([a-z-]+)"', names_block.group(1))) == set(builder.FAULTS)
    assert f"#define TBF_MAX_DELAY_S\t\t{builder.MAX_DELAY_S}\n" in source
    installer_case = re.search(r"^\tnone\|([a-z|-]+)\) ;;$", (SAMPLE / "install.sh").read_text(), re.M)
    assert installer_case is not None
    assert {"none", *installer_case.group(1).split("|")} == set(builder.FAULTS)


# ---- the real compiler (a few seconds) ---------------------------------------------------------


@pytest.mark.skipif(
    not Path(f"/usr/src/linux-headers-{KERNEL_N}/Makefile").is_file() or shutil.which("make") is None,
    reason=f"needs linux-headers-{KERNEL_N} and make",
)
def test_module_compiles_against_the_host_headers():
    ko = builder.build_module(KERNEL_N, "9.8.7")

    def modinfo(key: str) -> list[str]:
        return [v.decode() for v in re.findall(rb"(?<![^\0])" + key.encode() + rb"=([^\0]*)(?=\0)", ko)]

    assert modinfo("vermagic")[0].startswith(f"{KERNEL_N} SMP")
    assert modinfo("license") == ["GPL"]
    assert modinfo("version") == ["9.8.7"]
    assert modinfo("firmware") == ["testbed-faults/faults.conf"]
    assert {p.split(":", 1)[0] for p in modinfo("parm")} == {"fault", "delay_s", "state", "dropped"}
    assert b"/tmp/" not in ko  # the build directory is mapped out of the debug info


# ---- the health check (reads a fake /sys, /proc, /lib/firmware, /etc) ----------------------------

CONTENT = {
    "delayed-panic": "fault=delayed-panic\ndelay_s=40\n",
    "warn": "fault=warn\ndelay_s=5\n",
    "net-drop": "fault=net-drop\ndelay_s=5\n",
    "none": "fault=none\n",
    "sysctl-off": "fault=sysctl-off\n",
}
SYSCTL_OFF = "# off\nkernel.panic_on_oops = 0\nkernel.softlockup_panic = 0\n"


def fake_guest(
    root: Path,
    *,
    content: str | None,
    params: dict[str, str] | None,
    sysctl_conf: str | None = None,
    sysctls: dict[str, str] | None = None,
) -> Path:
    if content is not None:
        (root / "lib/firmware/testbed-faults").mkdir(parents=True)
        (root / "lib/firmware/testbed-faults/faults.conf").write_text(content)
    if params is not None:
        (root / "sys/module/testbed_faults/parameters").mkdir(parents=True)
        for name, value in params.items():
            (root / "sys/module/testbed_faults/parameters" / name).write_text(value + "\n")
    if sysctl_conf is not None:
        (root / "etc/sysctl.d").mkdir(parents=True)
        (root / "etc/sysctl.d/99-testbed-faults.conf").write_text(sysctl_conf)
    (root / "proc/sys/kernel").mkdir(parents=True)
    for name, value in (sysctls or {}).items():
        (root / "proc/sys/kernel" / name).write_text(value + "\n")
    return root


def params(fault: str, state: str, delay: str = "0", dropped: str = "0") -> dict[str, str]:
    return {"fault": fault, "delay_s": delay, "state": state, "dropped": dropped}


@pytest.mark.parametrize(
    ("guest", "status", "line"),
    [
        (
            {"content": CONTENT["delayed-panic"], "params": params("delayed-panic", "armed", "40")},
            0,
            "ok: testbed_faults loaded, fault delayed-panic armed (delay_s 40)",
        ),
        (
            {"content": CONTENT["warn"], "params": params("warn", "fired", "5")},
            0,
            "ok: testbed_faults loaded, fault warn fired (delay_s 5)",
        ),
        (
            {"content": CONTENT["net-drop"], "params": params("net-drop", "fired", "5", dropped="17")},
            0,
            "ok: testbed_faults loaded, fault net-drop fired (delay_s 5, 17 IPv4 packets dropped)",
        ),
        (
            {"content": CONTENT["none"], "params": params("none", "idle")},
            0,
            "ok: testbed_faults loaded, fault none",
        ),
        (
            {
                "content": CONTENT["sysctl-off"],
                "params": params("sysctl-off", "idle"),
                "sysctl_conf": SYSCTL_OFF,
                "sysctls": {"panic_on_oops": "0", "softlockup_panic": "0"},
            },
            0,
            "ok: testbed_faults loaded, fault sysctl-off: "
            "kernel.panic_on_oops=0 kernel.softlockup_panic=0 read back",
        ),
        (
            {"content": CONTENT["delayed-panic"], "params": None},
            1,
            "FAIL: testbed_faults is not loaded (content fault delayed-panic)",
        ),
        ({"content": None, "params": params("none", "idle")}, 1, "FAIL: no installed content"),
        (
            {"content": CONTENT["delayed-panic"], "params": params("none", "idle")},
            1,
            "FAIL: testbed_faults runs fault 'none', the installed content says 'delayed-panic'",
        ),
        (
            {"content": CONTENT["delayed-panic"], "params": params("delayed-panic", "armed", "20")},
            1,
            "FAIL: testbed_faults delay_s is '20', the installed content says '40'",
        ),
        (
            {"content": CONTENT["warn"], "params": params("warn", "idle", "5")},
            1,
            "FAIL: testbed_faults fault warn is in state 'idle', expected armed or fired",
        ),
        (
            {
                "content": CONTENT["sysctl-off"],
                "params": params("sysctl-off", "idle"),
                "sysctl_conf": SYSCTL_OFF,
                "sysctls": {"panic_on_oops": "1", "softlockup_panic": "0"},
            },
            1,
            "FAIL: fault sysctl-off but kernel.panic_on_oops reads back '1', expected 0",
        ),
        (
            {"content": CONTENT["sysctl-off"], "params": params("sysctl-off", "idle")},
            1,
            "FAIL: fault sysctl-off but",
        ),
    ],
)
def test_health_check_says_in_one_line_what_it_checked(tmp_path, guest, status, line):
    root = fake_guest(tmp_path / "guest", **guest)
    result = subprocess.run(
        ["sh", str(SAMPLE / "healthcheck.sh")],
        env={"PATH": os.environ["PATH"], "TESTBED_FAULTS_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (status, "")
    [printed] = result.stdout.splitlines()
    assert printed.startswith(f"testbed-faults-health: {line}")


# ---- the installer's refusals (it never gets near modprobe) ----------------------------------


@pytest.fixture
def no_modprobe_path(tmp_path: Path) -> str:
    """A PATH with the few tools the refusals need, and no modprobe, depmod or install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sed", "tail", "dirname", "cat", "id", "uname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize(
    ("args", "content", "status", "message"),
    [
        ([], None, 2, "--content FILE is required"),
        (["--content"], None, 2, "--content needs a FILE argument"),
        (["--bogus"], None, 2, "unknown argument: --bogus"),
        (["--content", "{dir}/missing.conf"], None, 2, "content file not found"),
        (["--content", "{dir}/faults.conf"], "", 2, "content file is empty"),
        (["--content", "{dir}/faults.conf"], "delay_s=5\n", 2, "has no fault= line"),
        (["--content", "{dir}/faults.conf"], "fault=explode\n", 2, "names an unknown fault: explode"),
        (["--help"], None, 0, ""),
    ],
)
def test_installer_refuses_bad_input_before_touching_anything(
    tmp_path, no_modprobe_path, args, content, status, message
):
    if content is not None:
        (tmp_path / "faults.conf").write_text(content)
    result = subprocess.run(
        ["sh", str(SAMPLE / "install.sh"), *(a.format(dir=tmp_path) for a in args)],
        env={"PATH": no_modprobe_path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == status
    assert message in result.stderr
    if status == 0:
        assert result.stdout.startswith("usage: install.sh --content FILE")


# ---- the captured consoles (real guests, kernel 6.1.0-56) -------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "console"

#: What each capture must show, in this order, for it to be the evidence it claims to be.
CAPTURED_EVIDENCE = {
    "none": ["testbed_faults: none loaded: nothing will fire", "Linux version", "none loaded"],
    "sysctl-off": [
        "testbed_faults: sysctl-off loaded: nothing will fire",
        "Linux version",
        "sysctl-off loaded",
    ],
    "warn": [
        "testbed_faults: warn firing now (5 s after load)",
        "WARNING: CPU: 0 PID: 49 at /usr/src/testbed_faults/testbed_faults.c:319 "
        "tbf_warn_from_module+0x22/0x29",
        "---[ end trace",
        "Linux version",
        "testbed_faults: warn firing now",
    ],
    "delayed-panic": [
        "testbed_faults: delayed-panic armed: fires 40 s after load",
        "Linux version",
        "[   77.608824] testbed_faults: delayed-panic armed: fires 40 s after load",
        "[  117.680913] testbed_faults: delayed-panic firing now (40 s after load)",
        "BUG: kernel NULL pointer dereference, address: 0000000000000008",
        "Workqueue: events tbf_fire [testbed_faults]",
        "RIP: 0010:tbf_fire_delayed_panic+0x1f/0x30 [testbed_faults]",
        "Kernel panic - not syncing: Fatal exception",
    ],
    "irq-spin": [
        "Linux version",
        "[   58.582956] testbed_faults: irq-spin firing now (20 s after load): spinning with interrupts off",
        "[  413.948678] Uhhuh. NMI received for unknown reason 21 on CPU 0.",
        "Kernel panic - not syncing: NMI: Not continuing",
        "<NMI>",
        "RIP: 0010:tbf_spin_with_irqs_off+0x29/0x36 [testbed_faults]",
        "</NMI>",
    ],
    "net-drop": [
        "testbed_faults: net-drop armed: fires 5 s after load",
        "testbed_faults: net-drop firing now (5 s after load): dropping every IPv4 packet except loopback",
    ],
    "reset-loop": [
        "testbed_faults: reset-loop firing now (3 s after load): emergency restart",
        "Linux version",
        "testbed_faults: reset-loop firing now",
        "Linux version",
        "testbed_faults: reset-loop firing now",
    ],
}


@pytest.mark.parametrize("fault", sorted(CAPTURED_EVIDENCE))
def test_captured_console_shows_the_fault_and_is_the_parser_fixture(fault):
    captured = (SAMPLE / "captured" / f"{fault}-6.1.0-56.log").read_bytes()
    assert (FIXTURES / f"faults-{fault}-6.1.0-56.log").read_bytes() == captured
    text = captured.decode("utf-8", "replace")
    position = 0
    for expected in CAPTURED_EVIDENCE[fault]:
        found = text.find(expected, position)
        assert found >= 0, f"{fault}: {expected!r} not found after offset {position}"
        position = found + len(expected)


def test_no_fault_but_the_captured_one_fires_in_its_capture():
    for fault in builder.FAULTS:
        text = (SAMPLE / "captured" / f"{fault}-6.1.0-56.log").read_text(errors="replace")
        assert {f for f in builder.FAULTS if f"testbed_faults: {f} " in text} == {fault}
