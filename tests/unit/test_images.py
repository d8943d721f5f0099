"""Golden image definitions, the digest that names a build, and the busybox control initramfs."""

import gzip
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import ConfigurationError
from orchestrator.images.definition import (
    CRASH_CMDLINE,
    DebianImage,
    InitramfsImage,
    definition_digest,
    load_definition,
    load_definitions,
)
from orchestrator.images.initramfs_builder import initramfs_bytes

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEFINITION_DIRS = [REPO / "images" / "linux", REPO / "images" / "controls"]

DEBIAN = """\
kind: debian
name: debian12-kernel-n
description: Debian 12, kernel N
os_version: debian-12
suite: bookworm
kernel: 6.1.0-56-amd64
packages: [systemd-sysv, openssh-server, qemu-guest-agent]
"""
CONTROL = """\
kind: busybox-initramfs
name: control-hang
kernel_from: debian12-kernel-n
init: |
  #!/bin/sh
  while true; do sleep 3600; done
"""


def load(tmp_path, text: str):
    path = tmp_path / "image.yaml"
    path.write_text(text)
    return load_definition(path)


def error(tmp_path, text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load(tmp_path, text)
    return str(caught.value)


# -- definitions ----------------------------------------------------------------------------------


def test_loads_both_kinds(tmp_path):
    debian = load(tmp_path, DEBIAN)
    assert isinstance(debian, DebianImage)
    assert (debian.name, debian.kernel, debian.os_family, debian.disk_size_mib) == (
        "debian12-kernel-n",
        "6.1.0-56-amd64",
        "linux",
        2048,
    )
    assert "panic=0" in debian.kernel_cmdline
    assert "console=ttyS0,115200" in debian.kernel_cmdline
    control = load(tmp_path, CONTROL)
    assert isinstance(control, InitramfsImage)
    assert (control.kernel_from, control.os_version) == ("debian12-kernel-n", "busybox")


@pytest.mark.parametrize(
    "path", sorted(p for d in DEFINITION_DIRS for p in d.glob("*.yaml")), ids=lambda p: p.name
)
def test_the_repositorys_definitions_load(path):
    definition = load_definition(path)
    assert definition.name == path.stem


def test_the_repositorys_definitions_have_unique_names():
    definitions = load_definitions(DEFINITION_DIRS)
    assert set(definitions) == {p.stem for d in DEFINITION_DIRS for p in d.glob("*.yaml")}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            DEBIAN.replace("kernel: 6.1.0-56-amd64", "kernel: 6.1"),
            "debian.kernel: Input should be a valid string",
        ),
        (
            DEBIAN.replace("kernel: 6.1.0-56-amd64", "kernel: linux-image-amd64"),
            "debian.kernel: String should match",
        ),
        (
            DEBIAN.replace("name: debian12-kernel-n", "name: Debian 12"),
            "debian.name: String should match pattern",
        ),
        (
            DEBIAN.replace("packages: [systemd-sysv, openssh-server, qemu-guest-agent]", "packages: []"),
            "debian.packages",
        ),
        (DEBIAN.replace("suite: bookworm\n", ""), "debian.suite: Field required"),
        (
            DEBIAN + "disk_size_mib: 100\n",
            "debian.disk_size_mib: Input should be greater than or equal to 512",
        ),
        (DEBIAN + "os_family: windows\n", "debian.os_family: Input should be 'linux'"),
        (DEBIAN + "colour: red\n", "debian.colour: Extra inputs are not permitted"),
        (
            CONTROL.replace("kernel_from: debian12-kernel-n\n", ""),
            "busybox-initramfs.kernel_from: Field required",
        ),
        (
            CONTROL.replace("init: |", "init: ''\nx: |"),
            "busybox-initramfs.init: String should have at least 1",
        ),
        (DEBIAN.replace("kind: debian", "kind: windows"), "'kind'"),
        (DEBIAN.replace("kind: debian\n", ""), "'kind'"),
        ("- debian\n", "Input should be a valid dictionary"),
        ("name: [debian\n", "while parsing"),
        (
            "kind: debian-fastboot\nname: broken\nbase: debian12-kernel-n\ncrash_from_boot: 1\n",
            "debian-fastboot.crash_from_boot: Input should be greater than or equal to 2",
        ),
    ],
    ids=[
        "kernel-not-a-string",
        "kernel-not-an-abi",
        "bad-name",
        "no-packages",
        "suite-missing",
        "disk-too-small",
        "not-linux",
        "unknown-field",
        "kernel-from-missing",
        "empty-init",
        "unknown-kind",
        "kind-missing",
        "not-a-mapping",
        "bad-yaml",
        "crashing-from-the-first-boot",  # nothing could be installed: it would never reach a candidate
    ],
)
def test_errors_name_the_field(tmp_path, text, fragment):
    message = error(tmp_path, text)
    assert message.startswith(f"image definition {tmp_path / 'image.yaml'}")
    assert fragment in message


def test_a_name_defined_twice_is_refused(tmp_path):
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "image.yaml").write_text(DEBIAN)
    with pytest.raises(
        ConfigurationError, match=r"image 'debian12-kernel-n' is defined twice \(again in .*b/image"
    ):
        load_definitions([tmp_path / "a", tmp_path / "b"])


# -- the digest -----------------------------------------------------------------------------------


def test_digest_is_stable(tmp_path):
    first = definition_digest(load(tmp_path, DEBIAN))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert definition_digest(load(tmp_path, DEBIAN)) == first
    reordered = "\n".join(reversed(DEBIAN.strip().splitlines())) + "\n"  # key order is not content
    assert definition_digest(load(tmp_path, reordered)) == first
    assert definition_digest(load(tmp_path, DEBIAN), {}) == first  # no inputs is no inputs


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("kernel: 6.1.0-56-amd64", "kernel: 6.1.0-55-amd64"),
        ("suite: bookworm", "suite: trixie"),
        ("qemu-guest-agent]", "qemu-guest-agent, strace]"),
        (
            "[systemd-sysv, openssh-server, qemu-guest-agent]",
            "[openssh-server, systemd-sysv, qemu-guest-agent]",
        ),
        ("os_version: debian-12", "os_version: debian-12.9"),
        ("name: debian12-kernel-n", "name: debian12-kernel-x"),
    ],
    ids=["kernel", "suite", "package-added", "package-order", "os-version", "name"],
)
def test_digest_changes_with_the_definition(tmp_path, old, new):
    assert old in DEBIAN
    before = definition_digest(load(tmp_path, DEBIAN))
    assert definition_digest(load(tmp_path, DEBIAN.replace(old, new))) != before


@pytest.mark.parametrize(
    "extra",
    [
        "disk_size_mib: 4096\n",
        "kernel_cmdline: root=/dev/vda console=ttyS0 " + " ".join(CRASH_CMDLINE) + " quiet\n",
    ],
)
def test_digest_changes_with_a_default_made_explicit_and_different(tmp_path, extra):
    assert definition_digest(load(tmp_path, DEBIAN + extra)) != definition_digest(load(tmp_path, DEBIAN))


def test_an_image_whose_command_line_would_hide_crashes_is_refused(tmp_path):
    for parameter in CRASH_CMDLINE:
        cmdline = " ".join(p for p in CRASH_CMDLINE if p != parameter)
        with pytest.raises(ConfigurationError) as caught:
            load(tmp_path, DEBIAN + f"kernel_cmdline: root=/dev/vda {cmdline}\n")
        assert f"the command line lacks {parameter}" in str(caught.value)


def test_digest_changes_with_its_inputs(tmp_path):
    control = load(tmp_path, CONTROL)
    first = definition_digest(control, {"debian12-kernel-n": "a" * 64})
    assert definition_digest(control, {"debian12-kernel-n": "a" * 64}) == first
    assert definition_digest(control, {"debian12-kernel-n": "b" * 64}) != first
    assert definition_digest(control) != first


# -- the control guests' initramfs ------------------------------------------------------------------

INIT = "#!/bin/sh\nmount -t proc proc /proc\necho 'control: up'\nwhile true; do sleep 3600; done\n"
BUSYBOX = b"\x7fELF" + bytes(range(256)) * 3 + b"odd"  # a length that needs padding


def cpio(archive: bytes, *arguments: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["cpio", *arguments], input=gzip.decompress(archive), capture_output=True, check=True, cwd=cwd
    )
    return done.stdout.decode()


def test_initramfs_is_a_gzip_newc_archive_cpio_can_list():
    archive = initramfs_bytes(INIT, BUSYBOX)
    assert archive[:2] == b"\x1f\x8b"  # gzip
    assert gzip.decompress(archive)[:6] == b"070701"  # newc
    names = cpio(archive, "-t").split()
    assert "init" in names
    assert "bin/busybox" in names
    assert {"bin", "dev", "proc", "sys"} <= set(names)


def test_initramfs_modes_and_links():
    listing = {line.split()[8]: line for line in cpio(initramfs_bytes(INIT, BUSYBOX), "-tv").splitlines()}
    assert listing["init"].startswith("-rwxr-xr-x")
    assert listing["bin/busybox"].startswith("-rwxr-xr-x")
    assert listing["bin/sh"].startswith("lrwxrwxrwx")
    assert listing["bin/sh"].endswith("bin/sh -> busybox")
    assert listing["proc"].startswith("drwxr-xr-x")


def test_initramfs_contents_survive_extraction(tmp_path):
    cpio(initramfs_bytes(INIT, BUSYBOX), "-idm", "--no-absolute-filenames", cwd=tmp_path)
    assert (tmp_path / "init").read_text() == INIT
    assert (tmp_path / "bin" / "busybox").read_bytes() == BUSYBOX
    assert (tmp_path / "bin" / "sleep").readlink() == Path("busybox")
    assert (tmp_path / "dev").is_dir()


def test_initramfs_is_reproducible():
    assert initramfs_bytes(INIT, BUSYBOX) == initramfs_bytes(INIT, BUSYBOX)
    assert initramfs_bytes(INIT, BUSYBOX) != initramfs_bytes(INIT + "\n", BUSYBOX)


@pytest.mark.parametrize(
    "path",
    [
        path
        for path in sorted((REPO / "images" / "controls").glob("*.yaml"))
        if isinstance(load_definition(path), InitramfsImage)  # broken-second-boot is a fast-boot image
    ],
    ids=lambda p: p.name,
)
def test_every_command_a_control_init_runs_is_in_its_initramfs(path):
    definition = load_definition(path)
    assert isinstance(definition, InitramfsImage)
    applets = {
        name.removeprefix("bin/") for name in cpio(initramfs_bytes(definition.init, BUSYBOX), "-t").split()
    }
    keywords = {"while", "do", "done", "true", "false", "if", "then", "else", "fi", "for", "exec", "set"}
    for line in definition.init.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for command in re.split(r"[;&|]+", line):
            words = shlex.split(command)
            while words and words[0] in keywords:
                words = words[1:]
            if words:
                assert words[0] in applets, f"{path.name}: {words[0]!r} is not in the initramfs"
