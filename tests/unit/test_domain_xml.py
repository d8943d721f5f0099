"""Domain, network and volume XML: pure builders, compared verbatim and checked against libvirt's schemas."""

import re
from pathlib import Path

import pytest
from lxml import etree

from orchestrator.adapters.domain_xml import (
    DOMAIN_PREFIX,
    METADATA_NAMESPACE,
    DomainSpec,
    domain_name,
    mac_for,
    render_domain_xml,
)
from orchestrator.adapters.libvirt_host import network_xml, overlay_xml, pool_xml
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

SCHEMAS = Path("/usr/share/libvirt/schemas")
RUN_ID = "20261125-171500-ab12"
CELL_ID = "debian12-kernel-n+dlp"


@pytest.fixture
def test_connection():
    """libvirt's test:///default driver: parses and keeps definitions like a real daemon, no hypervisor."""
    import libvirt

    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def schema(name: str) -> etree.RelaxNG:
    path = SCHEMAS / f"{name}.rng"
    if not path.is_file():
        pytest.fail(
            f"libvirt's RelaxNG schema {path} is missing: install libvirt-daemon or libvirt-clients "
            "(the unit tier validates every generated XML against it)"
        )
    return etree.RelaxNG(etree.parse(str(path)))


def assert_valid(kind: str, xml: str) -> etree._Element:
    document = etree.fromstring(xml.encode())
    rng = schema(kind)
    assert rng.validate(document), f"{kind} XML rejected by {kind}.rng: {rng.error_log}"
    return document


def spec(**changes) -> DomainSpec:
    name = domain_name(RUN_ID, CELL_ID)
    images = Path("/var/lib/endpoint-testbed/images/debian12-kernel-n")
    fields = {
        "name": name,
        "run_id": RUN_ID,
        "cell_id": CELL_ID,
        "image_name": "debian12-kernel-n",
        "image_digest": "0123456789abcdef" * 4,
        "domain_type": "kvm",
        "memory_mib": 1024,
        "vcpus": 2,
        "kernel": images / "vmlinuz",
        "initrd": images / "initrd.img",
        "cmdline": "root=/dev/vda rw console=ttyS0,115200 oops=panic panic=0 net.ifnames=0",
        "disk": Path(f"/var/lib/endpoint-testbed/pool/{name}.qcow2"),
        "network": "endpoint-testbed",
        "mac": mac_for(name),
        "console_log": Path(f"/var/lib/endpoint-testbed/runs/{RUN_ID}/cells/{CELL_ID}/console.log"),
    }
    fields.update(changes)
    return DomainSpec(**fields)


# -- domain XML -----------------------------------------------------------------------------------


def test_domain_xml_matches_the_snapshot(snapshots_dir):
    expected = (snapshots_dir / "domain-linux-kvm.xml").read_text()
    assert render_domain_xml(spec()) == expected


@pytest.mark.parametrize("domain_type", ["kvm", "qemu"])
def test_domain_xml_is_valid_for_libvirt(domain_type):
    assert_valid("domain", render_domain_xml(spec(domain_type=domain_type)))


@pytest.mark.parametrize(
    ("domain_type", "cpu_modes"),
    [("kvm", ["host-passthrough"]), ("qemu", [])],
)
def test_domain_type_and_cpu(domain_type, cpu_modes):
    domain = etree.fromstring(render_domain_xml(spec(domain_type=domain_type)).encode())
    assert domain.get("type") == domain_type
    assert domain.xpath("cpu/@mode") == cpu_modes


def test_domain_xml_has_what_crash_detection_needs():
    domain = etree.fromstring(render_domain_xml(spec()).encode())
    assert domain.find("features/acpi") is not None  # the guest finds pvpanic through ACPI
    assert domain.xpath("devices/panic/@model") == ["isa"]
    assert domain.findtext("on_crash") == "preserve"
    assert domain.findtext("on_reboot") == "restart"
    assert domain.findtext("on_poweroff") == "destroy"
    (log,) = domain.xpath("devices/serial/log")
    assert log.get("file") == str(spec().console_log)
    assert log.get("append") == "off"
    assert domain.xpath("devices/channel/target[@type='virtio']/@name") == ["org.qemu.guest_agent.0"]


def test_domain_xml_carries_the_spec():
    given = spec()
    domain = etree.fromstring(render_domain_xml(given).encode())
    ns = {"tb": METADATA_NAMESPACE}
    assert domain.findtext("name") == given.name
    assert domain.xpath("metadata/tb:cell/tb:run/text()", namespaces=ns) == [RUN_ID]
    assert domain.xpath("metadata/tb:cell/tb:id/text()", namespaces=ns) == [CELL_ID]
    assert domain.xpath("metadata/tb:cell/tb:image/@digest", namespaces=ns) == [given.image_digest]
    assert domain.findtext("memory") == "1024"
    assert domain.find("memory").get("unit") == "MiB"
    assert domain.findtext("vcpu") == "2"
    assert domain.findtext("os/kernel") == str(given.kernel)
    assert domain.findtext("os/initrd") == str(given.initrd)
    assert domain.findtext("os/cmdline") == given.cmdline
    assert domain.xpath("devices/disk/source/@file") == [str(given.disk)]
    assert domain.xpath("devices/interface/source/@network") == ["endpoint-testbed"]
    assert domain.xpath("devices/interface/mac/@address") == [given.mac]


def test_domain_xml_escapes_what_it_is_given():
    awkward = "console=ttyS0 testbed.tag='a&b' <x> \"q\""
    given = spec(cmdline=awkward, cell_id="cell<&>'\"")
    domain = assert_valid("domain", render_domain_xml(given))
    assert domain.findtext("os/cmdline") == awkward
    assert domain.xpath("metadata/tb:cell/tb:id/text()", namespaces={"tb": METADATA_NAMESPACE}) == [
        "cell<&>'\""
    ]


def test_domain_xml_carries_the_attempt():
    ns = {"tb": METADATA_NAMESPACE}
    first = etree.fromstring(render_domain_xml(spec()).encode())
    third = etree.fromstring(render_domain_xml(spec(attempt=3)).encode())
    assert first.xpath("metadata/tb:cell/tb:attempt/text()", namespaces=ns) == ["1"]
    assert third.xpath("metadata/tb:cell/tb:attempt/text()", namespaces=ns) == ["3"]


def test_no_network_filter_by_default():
    domain = etree.fromstring(render_domain_xml(spec()).encode())
    assert domain.find("devices/interface/filterref") is None


def test_network_filter_is_referenced_on_the_interface():
    domain = assert_valid("domain", render_domain_xml(spec(network_filter="endpoint-testbed-guest")))
    (filterref,) = domain.xpath("devices/interface/filterref")
    assert filterref.get("filter") == "endpoint-testbed-guest"
    assert len(filterref) == 0


def test_network_filter_parameters_are_rendered_in_a_stable_order():
    given = spec(
        network_filter="endpoint-testbed-guest",
        network_filter_parameters={
            "IP": "192.168.123.7",
            "HOST": "192.168.123.1",
            "MAC": "52:54:00:86:b2:0b",
        },
    )
    domain = assert_valid("domain", render_domain_xml(given))
    parameters = domain.xpath("devices/interface/filterref/parameter")
    assert [(p.get("name"), p.get("value")) for p in parameters] == [
        ("HOST", "192.168.123.1"),
        ("IP", "192.168.123.7"),
        ("MAC", "52:54:00:86:b2:0b"),
    ]


def test_network_filter_parameters_without_a_filter_are_refused():
    with pytest.raises(ConfigurationError, match="network_filter_parameters"):
        render_domain_xml(spec(network_filter_parameters={"IP": "192.168.123.7"}))


@pytest.mark.parametrize(("name", "value"), [("IP", "a'<&>"), ("I P", "1.2.3.4"), ("IP", "")])
def test_network_filter_parameters_libvirt_would_refuse_are_refused(name, value):
    given = spec(network_filter="endpoint-testbed-guest", network_filter_parameters={name: value})
    with pytest.raises(ConfigurationError, match=r"network_filter_parameters: .* is not a libvirt filter"):
        render_domain_xml(given)


def test_filtered_domain_matches_its_snapshot(snapshots_dir):
    given = spec(network_filter="endpoint-testbed-guest", attempt=2)
    expected = (snapshots_dir / "domain-linux-kvm-filtered.xml").read_text()
    assert render_domain_xml(given) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"domain_type": "kvm"},
        {"domain_type": "qemu"},
        {"network_filter": "endpoint-testbed-guest", "network_filter_parameters": {"IP": "192.168.123.9"}},
    ],
)
def test_domain_xml_defines_on_libvirts_test_driver(test_connection, changes):
    xml = render_domain_xml(spec(**changes))
    domain = test_connection.defineXML(xml)
    try:
        defined = etree.fromstring(domain.XMLDesc().encode())
        assert defined.findtext("name") == spec().name
        assert defined.xpath("devices/panic/@model") == ["isa"]
        assert defined.findtext("on_crash") == "preserve"
    finally:
        domain.undefine()


# -- names and addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell_id", "name"),
    [
        ("debian12-kernel-n", "tb-20261125-171500-ab12-debian12-kernel-n"),
        ("debian12-kernel-n+dlp", "tb-20261125-171500-ab12-debian12-kernel-n__dlp"),
        ("debian12-kernel-n+dlp+av", "tb-20261125-171500-ab12-debian12-kernel-n__dlp__av"),
        ("win 11/23h2", "tb-20261125-171500-ab12-win_11_23h2"),
        ("keep.these_-chars", "tb-20261125-171500-ab12-keep.these_-chars"),
        ("ünïcode", "tb-20261125-171500-ab12-_n_code"),
    ],
)
def test_domain_name_is_libvirt_safe(cell_id, name):
    assert domain_name(RUN_ID, cell_id) == name
    assert name.startswith(DOMAIN_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name)


def test_mac_for_is_stable_and_in_qemus_range():
    names = [domain_name(RUN_ID, f"cell-{index}") for index in range(50)]
    macs = [mac_for(name) for name in names]
    assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac) for mac in macs)
    assert macs == [mac_for(name) for name in names]
    assert len(set(macs)) == len(macs)
    # Pinned (and in the domain snapshot): a domain keeps its address across orchestrator versions.
    assert mac_for("tb-20261125-171500-ab12-debian12-kernel-n_dlp") == "52:54:00:94:69:a1"


# -- network, pool and overlay XML ----------------------------------------------------------------


def test_network_xml_is_isolated_and_valid():
    network = assert_valid("network", network_xml("endpoint-testbed", "tbbr0", "192.168.123.0/24"))
    assert network.find("forward") is None  # no route anywhere: guests reach nothing but the host
    assert network.findtext("name") == "endpoint-testbed"
    assert network.xpath("bridge/@name") == ["tbbr0"]
    (ip,) = network.xpath("ip")
    assert (ip.get("address"), ip.get("netmask")) == ("192.168.123.1", "255.255.255.0")
    (dhcp,) = ip.xpath("dhcp/range")
    assert (dhcp.get("start"), dhcp.get("end")) == ("192.168.123.2", "192.168.123.254")


@pytest.mark.parametrize(
    ("cidr", "address", "start", "end"),
    [
        ("10.0.0.0/28", "10.0.0.1", "10.0.0.2", "10.0.0.14"),
        ("10.20.0.0/16", "10.20.0.1", "10.20.0.2", "10.20.255.254"),
    ],
)
def test_network_xml_fits_any_cidr(cidr, address, start, end):
    network = assert_valid("network", network_xml("n", "br9", cidr))
    assert network.xpath("ip/@address") == [address]
    assert network.xpath("ip/dhcp/range/@start") == [start]
    assert network.xpath("ip/dhcp/range/@end") == [end]


def test_domain_names_of_different_cells_differ():
    assert domain_name(RUN_ID, "a+b") != domain_name(RUN_ID, "a_b")


@pytest.mark.parametrize("cidr", ["10.0.0.0/29", "10.0.0.0/30", "10.0.0.1/32"])
def test_network_xml_refuses_a_network_too_small(cidr):
    with pytest.raises(ConfigurationError, match=r"network_cidr: .* too small"):
        network_xml("n", "br9", cidr)


def test_overlay_xml_is_a_valid_qcow2_on_its_backing_image():
    backing = Path("/var/lib/endpoint-testbed/images/debian12-kernel-n/disk.qcow2")
    volume = assert_valid("storagevol", overlay_xml("tb-run-cell.qcow2", backing))
    assert volume.findtext("name") == "tb-run-cell.qcow2"
    assert volume.find("capacity") is None  # libvirt takes the backing image's
    assert volume.xpath("target/format/@type") == ["qcow2"]
    assert volume.findtext("backingStore/path") == str(backing)
    assert volume.xpath("backingStore/format/@type") == ["qcow2"]


def test_pool_xml_is_valid():
    pool = assert_valid("storagepool", pool_xml(Path("/var/lib/endpoint-testbed/pool")))
    assert pool.get("type") == "dir"
    assert pool.findtext("target/path") == "/var/lib/endpoint-testbed/pool"
