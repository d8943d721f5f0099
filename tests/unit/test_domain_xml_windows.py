"""Windows domain XML: UEFI (Secure Boot for Windows 11), TPM, Hyper-V crash MSRs; checked against
libvirt's schema, its test driver and the firmware descriptors of Debian's ovmf package."""

import json
from pathlib import Path

import pytest
from lxml import etree

from orchestrator.adapters.domain_xml import (
    METADATA_NAMESPACE,
    OVMF,
    OVMF_SECURE_BOOT,
    WindowsDomainSpec,
    compose,
    domain_name,
    mac_for,
    nvram_path,
    render_domain_xml,
)
from orchestrator.errors import ConfigurationError
from tests.unit.test_domain_xml import assert_valid

pytestmark = pytest.mark.unit

RUN_ID = "20261125-171500-ab12"
CELL_ID = "win11-24h2+dlp"
FIRMWARE_DESCRIPTORS = Path("/usr/share/qemu/firmware")


def spec(**changes) -> WindowsDomainSpec:
    cell_id = changes.pop("cell_id", CELL_ID)
    name = domain_name(RUN_ID, cell_id)
    disk = Path(f"/var/lib/endpoint-testbed/pool/{name}.qcow2")
    fields = {
        "name": name,
        "run_id": RUN_ID,
        "cell_id": cell_id,
        "image_name": "win11-24h2",
        "image_digest": "fedcba9876543210" * 4,
        "domain_type": "kvm",
        "memory_mib": 4096,
        "vcpus": 2,
        "disk": disk,
        "nvram": nvram_path(disk),
        "network": "endpoint-testbed",
        "mac": mac_for(name),
        "console_log": Path(f"/var/lib/endpoint-testbed/runs/{RUN_ID}/cells/{cell_id}/console.log"),
        "network_filter": "endpoint-testbed-guest",
    }
    fields.update(changes)
    return WindowsDomainSpec(**fields)


def win10() -> WindowsDomainSpec:
    return spec(
        cell_id="win10-22h2",
        image_name="win10-22h2",
        firmware=OVMF,
        nvram_template=Path("/var/lib/endpoint-testbed/images/win10-22h2-0123456789ab/efivars.fd"),
        attempt=2,
    )


def parsed(given: WindowsDomainSpec) -> etree._Element:
    return etree.fromstring(render_domain_xml(given).encode())


@pytest.mark.parametrize(
    ("snapshot", "given"),
    [("domain-windows11-kvm.xml", spec()), ("domain-windows10-kvm.xml", win10())],
)
def test_windows_domain_xml_matches_the_snapshot(snapshots_dir, snapshot, given):
    assert render_domain_xml(given) == (snapshots_dir / snapshot).read_text()


@pytest.mark.parametrize("given", [spec(), win10()], ids=["secure-boot", "plain-uefi"])
def test_windows_domain_xml_is_valid_for_libvirt(given):
    assert_valid("domain", render_domain_xml(given))


@pytest.mark.parametrize("given", [spec(), win10()], ids=["secure-boot", "plain-uefi"])
def test_windows_domain_xml_defines_on_libvirts_test_driver(given):
    import libvirt

    connection = libvirt.open("test:///default")
    try:
        domain = connection.defineXML(render_domain_xml(given))
        defined = etree.fromstring(domain.XMLDesc().encode())
        assert defined.findtext("name") == given.name
        assert defined.xpath("devices/panic/@model") == ["hyperv"]
        assert defined.xpath("devices/tpm/backend/@version") == ["2.0"]
        assert defined.findtext("os/nvram") == str(given.nvram)
        domain.undefine()
    finally:
        connection.close()


def test_windows_machine_and_firmware():
    domain = parsed(spec())
    assert domain.get("type") == "kvm"
    assert domain.xpath("os/type/@machine") == ["q35"]
    (loader,) = domain.xpath("os/loader")
    assert (loader.get("type"), loader.get("readonly"), loader.get("secure")) == ("pflash", "yes", "yes")
    assert loader.text == "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
    (nvram,) = domain.xpath("os/nvram")
    assert nvram.get("template") == "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    assert nvram.text == f"/var/lib/endpoint-testbed/pool/{spec().name}_VARS.fd"
    assert domain.xpath("os/boot/@dev") == ["hd"]
    assert domain.xpath("features/smm/@state") == ["on"]  # Secure Boot firmware needs SMM
    assert domain.find("os/kernel") is None


def test_windows_without_secure_boot_uses_the_images_variable_store():
    domain = parsed(win10())
    assert domain.xpath("os/loader/@secure") == ["no"]
    assert domain.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert domain.xpath("os/nvram/@template") == [str(win10().nvram_template)]
    assert domain.find("features/smm") is None


def test_windows_has_what_bugcheck_capture_needs():
    domain = parsed(spec())
    assert domain.xpath("devices/panic/@model") == ["hyperv"]  # the crash MSRs carry the stop code
    assert domain.findtext("on_crash") == "preserve"
    assert domain.findtext("on_reboot") == "restart"
    hyperv = domain.find("features/hyperv")
    assert hyperv.get("mode") == "custom"
    enabled = [child.tag for child in hyperv if child.get("state") == "on"]
    assert enabled == ["relaxed", "vapic", "spinlocks", "vpindex", "synic", "stimer", "frequencies"]
    assert hyperv.find("spinlocks").get("retries") == "8191"
    # stimer needs the Hyper-V reference clock
    assert domain.xpath("clock/timer[@name='hypervclock']/@present") == ["yes"]
    assert domain.xpath("clock/timer[@name='hpet']/@present") == ["no"]
    assert domain.xpath("cpu/@mode") == ["host-passthrough"]


def test_windows_devices():
    given = spec()
    domain = parsed(given)
    assert domain.xpath("devices/disk/target/@bus") == ["virtio"]
    assert domain.xpath("devices/disk/source/@file") == [str(given.disk)]
    assert domain.xpath("devices/interface/model/@type") == ["virtio"]
    assert domain.xpath("devices/interface/mac/@address") == [given.mac]
    assert domain.xpath("devices/interface/filterref/@filter") == ["endpoint-testbed-guest"]
    (tpm,) = domain.xpath("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    assert (tpm.find("backend").get("type"), tpm.find("backend").get("version")) == ("emulator", "2.0")
    assert domain.xpath("devices/video/model/@type") == ["vga"]
    assert domain.xpath("devices/channel/target[@type='virtio']/@name") == ["org.qemu.guest_agent.0"]
    assert domain.xpath("devices/serial/log/@file") == [str(given.console_log)]
    assert domain.xpath("pm/*/@enabled") == ["no", "no"]


def test_windows_metadata_names_the_cell():
    ns = {"tb": METADATA_NAMESPACE}
    domain = parsed(win10())
    assert domain.xpath("metadata/tb:cell/tb:id/text()", namespaces=ns) == ["win10-22h2"]
    assert domain.xpath("metadata/tb:cell/tb:attempt/text()", namespaces=ns) == ["2"]
    assert domain.xpath("metadata/tb:cell/tb:image/text()", namespaces=ns) == ["win10-22h2"]


def test_windows_is_refused_on_a_tcg_host():
    with pytest.raises(ConfigurationError, match=r"image win11-24h2: Windows guests need a KVM host"):
        render_domain_xml(spec(domain_type="qemu"))


def test_both_families_share_the_parts_that_detect_crashes():
    from tests.unit.test_domain_xml import spec as linux_spec

    linux, windows = compose(linux_spec()), compose(spec())
    assert (linux.panic.model, windows.panic.model) == ("isa", "hyperv")
    assert linux.console_log.name == windows.console_log.name == "console.log"
    assert linux.interface.filter is None
    assert windows.interface.filter == "endpoint-testbed-guest"


@pytest.mark.parametrize("firmware", [OVMF, OVMF_SECURE_BOOT], ids=["plain", "secure-boot"])
def test_firmware_files_are_debians(firmware):
    """The paths are those Debian's ovmf package installs, paired as its own descriptors pair them."""
    if not FIRMWARE_DESCRIPTORS.is_dir() or not firmware.code.parent.is_dir():
        pytest.skip("Debian's ovmf package is not installed here (apt-get install ovmf)")
    assert firmware.code.exists()
    assert firmware.vars_template.is_file()
    pairs = {}
    for descriptor in FIRMWARE_DESCRIPTORS.glob("*.json"):
        mapping = json.loads(descriptor.read_text())["mapping"]
        if "nvram-template" in mapping:
            features = set(json.loads(descriptor.read_text())["features"])
            pairs[mapping["executable"]["filename"]] = (mapping["nvram-template"]["filename"], features)
    template, features = pairs[str(firmware.code)]
    assert template == str(firmware.vars_template)
    assert ("secure-boot" in features and "enrolled-keys" in features) == firmware.secure_boot
