"""Windows golden images: definitions, Packer templates, answer files, scripts and the builder's
refusals and command line. Nothing here installs Windows (that needs KVM and your ISO)."""

import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import hcl2
import pytest
from typer.testing import CliRunner

from orchestrator.adapters.domain_xml import OVMF, OVMF_SECURE_BOOT
from orchestrator.adapters.kvm_probe import KvmVerdict
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.images.build import build_images
from orchestrator.images.definition import WindowsImage, load_definitions
from orchestrator.images.windows_builder import (
    PASSWORD_MARK,
    WindowsMedia,
    build_windows_image,
    check_build_host,
    check_media,
    packer_command,
    write_config_dir,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
WINDOWS = REPO / "images" / "windows"
VERSIONS = ["win11-24h2", "win10-22h2", "server2022", "server2025"]
UNATTEND = "{urn:schemas-microsoft-com:unattend}"
SHA = "ab" * 32
KVM = KvmVerdict(True, "KVM usable")


def definitions() -> dict[str, WindowsImage]:
    loaded = load_definitions([WINDOWS])
    assert all(isinstance(item, WindowsImage) for item in loaded.values())
    return {name: item for name, item in loaded.items() if isinstance(item, WindowsImage)}


def hcl(path: Path) -> dict:
    with path.open() as stream:
        return hcl2.load(stream)


def unquote(value):
    return value.strip('"') if isinstance(value, str) else value


# -- definitions ----------------------------------------------------------------------------------


def test_the_four_versions_are_defined():
    assert sorted(definitions()) == sorted(VERSIONS)
    assert definitions()["win11-24h2"].secure_boot
    assert definitions()["win11-24h2"].tpm


@pytest.mark.parametrize("name", VERSIONS)
def test_definition_and_packer_vars_agree(name):
    definition = definitions()[name]
    values = hcl(WINDOWS / definition.packer_vars)
    assert (values["secure_boot"], values["tpm"]) == (definition.secure_boot, definition.tpm)
    assert (values["disk_size_mib"], values["memory_mib"], values["cpus"]) == (
        definition.disk_size_mib,
        definition.memory_mib,
        definition.vcpus,
    )
    assert (WINDOWS / "unattend" / definition.autounattend / "autounattend.xml").is_file()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "windows-packer", "packer_vars": "../x.hcl"}, "packer_vars"),
        ({"password": "short"}, "password"),
        ({"password": "has<markup>inside"}, "password"),
        ({"disk_size_mib": 1024}, "disk_size_mib"),
        ({"edition": "x"}, "edition"),
    ],
)
def test_bad_definitions_name_the_field(change, field):
    data = definitions()["win10-22h2"].model_dump(mode="json") | change
    with pytest.raises(ValueError, match=field):
        WindowsImage.model_validate(data)


# -- Packer templates -------------------------------------------------------------------------------


def source() -> dict:
    parsed = hcl(WINDOWS / "packer" / "windows.pkr.hcl")
    return parsed["source"][0]['"qemu"']['"windows"']


@pytest.mark.parametrize("path", sorted(WINDOWS.rglob("*.hcl")), ids=lambda path: path.name)
def test_every_template_parses(path):
    assert hcl(path)


def test_the_template_builds_what_the_testbed_relies_on():
    settings = {key: unquote(value) for key, value in source().items()}
    assert settings["communicator"] == "winrm"
    assert (settings["winrm_use_ssl"], settings["winrm_use_ntlm"], settings["winrm_insecure"]) == (
        True,
        True,
        True,
    )
    assert settings["disk_interface"] == "virtio"
    assert settings["net_device"] == "virtio-net"
    assert settings["accelerator"] == "kvm"
    assert settings["efi_boot"] is True
    assert settings["tpm_device_type"] == "tpm-crb"
    assert settings["vtpm"] == "${var.tpm}"
    assert settings["cd_label"] == "TESTBED"
    assert "/generalize /oobe /shutdown" in settings["shutdown_command"]
    locals_ = hcl(WINDOWS / "packer" / "windows.pkr.hcl")["locals"][0]
    # the same Debian OVMF files the domains boot with
    for firmware in (OVMF, OVMF_SECURE_BOOT):
        assert str(firmware.code) in locals_["efi_code"]
        assert str(firmware.vars_template) in locals_["efi_vars"]


def test_the_plugin_is_pinned():
    packer = hcl(WINDOWS / "packer" / "plugins.pkr.hcl")["packer"][0]
    qemu = packer["required_plugins"][0]["qemu"]
    assert unquote(qemu["source"]) == "github.com/hashicorp/qemu"
    assert unquote(packer["required_version"]).startswith(">= 1.10")


def packer_version() -> tuple[int, int] | None:
    if shutil.which("packer") is None:
        return None
    found = re.search(
        r"(\d+)\.(\d+)",
        subprocess.run(["packer", "version"], check=False, capture_output=True, text=True).stdout,
    )
    return (int(found.group(1)), int(found.group(2))) if found else None


@pytest.mark.parametrize("version", VERSIONS)
def test_packer_validate_syntax_only(version, tmp_path):
    found = packer_version()
    if found is None:
        pytest.skip("no packer binary on this host (Debian: apt-get install packer)")
    if found >= (1, 10):
        command = ["packer", "validate", "-syntax-only", f"-var-file={WINDOWS / f'{version}.pkrvars.hcl'}"]
        targets = [str(WINDOWS / "packer")]
    else:
        # Packer before 1.10 knows no required_plugins block: check the other files' syntax alone.
        command = ["packer", "validate", "-syntax-only"]
        targets = [str(WINDOWS / "packer" / name) for name in ("variables.pkr.hcl", "windows.pkr.hcl")]
    for target in targets:
        checked = subprocess.run(
            [*command, target], capture_output=True, text=True, cwd=tmp_path, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


# -- answer files and scripts -----------------------------------------------------------------------

ANSWER_FILES = sorted(WINDOWS.rglob("*.xml"))


@pytest.mark.parametrize("path", ANSWER_FILES, ids=lambda path: path.relative_to(WINDOWS).as_posix())
def test_answer_files_are_well_formed(path):
    root = ElementTree.parse(path).getroot()
    assert root.tag == f"{UNATTEND}unattend"
    assert PASSWORD_MARK in path.read_text()


@pytest.mark.parametrize(
    ("version", "folder"),
    [("win11-24h2", "w11"), ("win10-22h2", "w10"), ("server2022", "2k22"), ("server2025", "2k25")],
)
def test_setup_finds_the_virtio_disk_and_runs_the_testbed_setup(version, folder):
    root = ElementTree.parse(WINDOWS / "unattend" / version / "autounattend.xml").getroot()
    paths = [element.text for element in root.iter(f"{UNATTEND}Path")]
    assert f"E:\\virtio-win\\viostor\\{folder}\\amd64" in paths
    assert f"E:\\virtio-win\\NetKVM\\{folder}\\amd64" in paths
    commands = [element.text or "" for element in root.iter(f"{UNATTEND}CommandLine")]
    assert any("setup.ps1" in command for command in commands)
    (image,) = list(root.iter(f"{UNATTEND}MetaData"))
    assert image.findtext(f"{UNATTEND}Key") == "/IMAGE/NAME"


def test_clones_enable_winrm_again_at_first_logon():
    root = ElementTree.parse(WINDOWS / "unattend" / "sysprep-unattend.xml").getroot()
    commands = [element.text or "" for element in root.iter(f"{UNATTEND}CommandLine")]
    assert commands == [
        "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\testbed\\scripts\\enable-winrm.ps1"
    ]


def test_the_crash_settings():
    script = (WINDOWS / "scripts" / "configure-crash.ps1").read_text()
    assert "-Name AutoReboot -Type DWord -Value 0" in script
    assert "-Name NMICrashDump -Type DWord -Value 1" in script
    assert "-Name CrashDumpEnabled -Type DWord -Value 2" in script
    assert "recoveryenabled No" in script
    assert "bootstatuspolicy IgnoreAllFailures" in script
    assert "reagentc.exe /disable" in script  # startup repair and Quick Machine Recovery live in WinRE


def test_winrm_is_enabled_last():
    steps = [
        line for line in (WINDOWS / "scripts" / "setup.ps1").read_text().splitlines() if line.startswith("& ")
    ]
    assert "enable-winrm.ps1" in steps[-1]
    assert len(steps) == 4
    winrm = (WINDOWS / "scripts" / "enable-winrm.ps1").read_text()
    assert "-Transport HTTPS" in winrm
    assert "Auth\\Basic -Value $false" in winrm
    assert "AllowUnencrypted -Value $false" in winrm


def test_updates_are_off():
    script = (WINDOWS / "scripts" / "disable-updates.ps1").read_text()
    assert "NoAutoUpdate" in script
    assert "'wuauserv', 'UsoSvc', 'WaaSMedicSvc'" in script


# -- the builder -----------------------------------------------------------------------------------


def windows11(tmp_path: Path, **changes) -> WindowsImage:
    virtio = tmp_path / "virtio-win.iso"
    virtio.write_bytes(b"iso")
    return definitions()["win11-24h2"].model_copy(update={"virtio_win_iso": virtio, **changes})


def media(tmp_path: Path) -> WindowsMedia:
    iso = tmp_path / "Win11_24H2_English_x64.iso"
    iso.write_bytes(b"windows")
    return WindowsMedia(iso, SHA.upper())


def test_media_is_checked_first(tmp_path):
    with pytest.raises(
        ConfigurationError, match=r"testbed images build win11-24h2 --iso PATH --iso-sha256 HEX"
    ):
        check_media(windows11(tmp_path), None)
    with pytest.raises(ConfigurationError, match="--iso-sha256"):
        check_media(windows11(tmp_path), WindowsMedia(media(tmp_path).iso, "abc"))
    with pytest.raises(ConfigurationError, match=r"--iso: .* is not a file"):
        check_media(windows11(tmp_path), WindowsMedia(tmp_path / "none.iso", SHA))
    with pytest.raises(ConfigurationError, match="virtio_win_iso"):
        check_media(windows11(tmp_path, virtio_win_iso=tmp_path / "gone.iso"), media(tmp_path))
    assert check_media(windows11(tmp_path), media(tmp_path)).iso_sha256 == SHA


def tools(*missing: str):
    return lambda name: None if name in missing else f"/usr/bin/{name}"


@pytest.mark.parametrize(
    ("which", "version", "kvm", "message"),
    [
        (tools(), "Packer v1.11.2", KvmVerdict(False, "/dev/kvm is missing"), "KVM.*/dev/kvm is missing"),
        (tools("packer"), "", KVM, "packer is not installed"),
        (tools(), "Packer v1.6.6", KVM, "Packer v1.6 is too old"),
        (tools("xorriso"), "Packer v1.11.2\n", KVM, "xorriso is not installed"),
    ],
)
def test_the_build_host_is_checked(which, version, kvm, message):
    with pytest.raises(InfrastructureError, match=message):
        check_build_host(which, lambda argv, **_: version, kvm)


def test_a_fit_host_passes():
    check_build_host(
        tools(), lambda argv, **_: "Packer v1.11.2\n\nYour version of Packer is out of date!", KVM
    )


def test_packer_command(tmp_path):
    definition = windows11(tmp_path)
    argv, environment = packer_command(
        definition,
        check_media(definition, media(tmp_path)),
        windows_dir=WINDOWS,
        config_dir=tmp_path / "cd",
        output_dir=tmp_path / "out",
    )
    assert argv[:4] == ["packer", "build", "-timestamp-ui", f"-var-file={WINDOWS / 'win11-24h2.pkrvars.hcl'}"]
    assert argv[-1] == str(WINDOWS / "packer")
    variables = dict(argv[index + 1].split("=", 1) for index, item in enumerate(argv) if item == "-var")
    assert variables["iso_checksum"] == f"sha256:{SHA}"
    assert (variables["secure_boot"], variables["tpm"]) == ("true", "true")
    assert variables["config_dir"] == str(tmp_path / "cd")
    assert definition.password not in " ".join(argv)  # never on a command line others can read
    assert environment["PKR_VAR_winrm_password"] == definition.password


def test_the_setup_cd_carries_the_answer_files_with_the_password(tmp_path):
    definition = windows11(tmp_path, password="Another-Passw0rd")
    write_config_dir(definition, WINDOWS, tmp_path / "cd")
    answer = (tmp_path / "cd" / "autounattend.xml").read_text()
    assert "Another-Passw0rd" in answer
    assert PASSWORD_MARK not in answer
    ElementTree.fromstring(answer)
    assert (tmp_path / "cd" / "scripts" / "enable-winrm.ps1").is_file()
    assert PASSWORD_MARK not in (tmp_path / "cd" / "sysprep-unattend.xml").read_text()


def test_a_build_records_the_image(tmp_path):
    calls = []

    def packer_and_friends(argv, **kwargs):
        calls.append([str(part) for part in argv])
        if argv[:2] == ["packer", "build"]:
            output = Path(
                next(item.split("=", 1)[1] for item in argv if item.startswith("output_directory="))
            )
            output.mkdir(parents=True)
            (output / "disk.qcow2").write_bytes(b"QFI\xfb" + bytes(60))
            (output / "efivars.fd").write_bytes(bytes(540672))
            assert kwargs["env"]["PKR_VAR_winrm_password"] == "Testbed-Passw0rd!"
        return "Packer v1.11.2"

    record = build_windows_image(
        windows11(tmp_path),
        media(tmp_path),
        digest="c" * 64,
        images_dir=tmp_path / "images",
        windows_dir=WINDOWS,
        progress=lambda message: None,
        runner=packer_and_friends,
        which=tools(),
        kvm=lambda: KVM,
    )
    assert [call[:2] for call in calls] == [
        ["packer", "version"],
        ["xorriso", "-osirrox"],
        ["packer", "init"],
        ["packer", "build"],
    ]
    assert record.directory == tmp_path / "images" / f"win11-24h2-{'c' * 12}"
    assert (record.os_family, record.os_version, record.kind) == (
        "windows",
        "windows-11-24h2",
        "windows-packer",
    )
    assert record.files_present()
    assert record.disk_bytes == 64
    assert not (tmp_path / "images" / ".cache" / "work-win11-24h2").exists()


def test_a_build_without_the_disk_is_the_hosts_trouble(tmp_path):
    with pytest.raises(InfrastructureError, match=r"without disk\.qcow2"):
        build_windows_image(
            windows11(tmp_path),
            media(tmp_path),
            digest="c" * 64,
            images_dir=tmp_path / "images",
            windows_dir=WINDOWS,
            progress=lambda message: None,
            runner=lambda argv, **_: "Packer v1.11.2",
            which=tools(),
            kvm=lambda: KVM,
        )


def test_build_images_dispatches_windows_and_asks_for_the_iso(tmp_path):
    with pytest.raises(ConfigurationError, match="--iso PATH --iso-sha256 HEX"):
        build_images(
            definitions(),
            tmp_path / "images",
            "http://deb.debian.org/debian",
            lambda message: None,
            names=["win11-24h2"],
            windows_dir=WINDOWS,
        )


# -- the command line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["win11-24h2", "--iso", "/nonexistent.iso"], "--iso and --iso-sha256 go together"),
        (["debian12-kernel-n", "--iso", "/x.iso", "--iso-sha256", SHA], "name exactly one Windows image"),
        (
            ["win11-24h2", "--iso", "/nonexistent.iso", "--iso-sha256", SHA],
            "--iso: /nonexistent.iso is not a file",
        ),
    ],
)
def test_images_build_refuses_bad_media_with_exit_code_3(tmp_path, arguments, message):
    from api.cli.main import app

    result = CliRunner().invoke(
        app, ["images", "build", *arguments], env={"TESTBED_STATE_DIR": str(tmp_path)}
    )
    assert result.exit_code == 3, result.output
    assert message in result.output
