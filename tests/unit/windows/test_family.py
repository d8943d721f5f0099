"""WindowsFamily: its domain definition from an image record, its crash report from the evidence a
cell leaves, what it leaves on the host, and its place in the family registry."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from orchestrator.adapters.domain_xml import OVMF, OVMF_SECURE_BOOT, domain_name, nvram_path
from orchestrator.adapters.libvirt_events import panic_details
from orchestrator.errors import ConfigurationError
from orchestrator.guests import ACTIVITY_FAMILIES, FAMILIES
from orchestrator.guests.channel import DomainFiles, GuestFamily, LeavesHostFiles
from orchestrator.guests.windows.events import parse_events
from orchestrator.guests.windows.family import WindowsFamily, image_credentials, last_panic, sensor_service
from orchestrator.guests.windows.guest_channel import SYSTEM_EVENTS_FILE
from tests.unit.test_domain_xml import assert_valid
from tests.unit.windows.cells import AgentHost, run_context, windows_plan, windows_record, write_candidate
from tests.unit.windows.test_minidump import HAL, NT, SENSOR, build_dump

pytestmark = pytest.mark.unit

PANIC_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "windows" / "panic"
EVENT_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "windows" / "events"


@pytest.fixture
def cell(tmp_path):
    record = windows_record(tmp_path / "images")
    context = run_context(tmp_path, record, write_candidate(tmp_path / "candidate"))
    plan = windows_plan(record)
    family = WindowsFamily(AgentHost(), context, step_runner=lambda *args: None)
    domain = domain_name(context.run_id, plan.cell_id)
    pool = context.settings.pool_dir(context.settings.hosts[0])
    files = DomainFiles(context.cell_dir(plan.cell_id) / "console.log", pool / f"{domain}.qcow2")
    return family, plan, domain, files, context


def test_windows_is_a_registered_family_that_needs_kvm():
    assert FAMILIES["windows"] is WindowsFamily
    assert sorted(ACTIVITY_FAMILIES) == ["linux"]  # a POSIX sh workload: Windows refused at planning
    assert WindowsFamily.needs_kvm is True
    assert FAMILIES["linux"].needs_kvm is False


def test_the_family_is_what_the_domain_cell_expects(cell):
    family = cell[0]
    checked: GuestFamily = family  # mypy checks the protocol; at run time the hook is found by isinstance
    assert checked.name == "windows"
    assert isinstance(family, LeavesHostFiles)


def test_domain_xml_of_a_secure_boot_image_on_a_kvm_host(cell):
    family, plan, domain, files, context = cell
    document = assert_valid("domain", family.domain_xml(plan, domain, files, "kvm"))
    record = context.images[plan.image.name]
    assert document.get("type") == "kvm"
    assert document.findtext("name") == domain
    assert document.findtext("os/loader") == str(OVMF_SECURE_BOOT.code)
    assert document.xpath("os/nvram/@template") == [str(record.nvram_template)]
    assert document.findtext("os/nvram") == str(nvram_path(files.overlay))
    assert document.xpath("devices/disk/source/@file") == [str(files.overlay)]
    assert document.xpath("devices/serial/log/@file") == [str(files.console_log)]
    assert document.xpath("devices/interface/filterref/@filter") == ["endpoint-testbed-guest"]
    assert document.findtext("memory") == "4096"


def test_an_image_without_secure_boot_gets_plain_ovmf(tmp_path):
    record = windows_record(tmp_path / "images", name="win10-22h2", secure_boot=False)
    context = run_context(tmp_path, record, write_candidate(tmp_path / "candidate"))
    family = WindowsFamily(AgentHost(), context)
    overlay = tmp_path / "pool" / "tb-x.qcow2"
    xml = family.domain_xml(
        windows_plan(record), "tb-x", DomainFiles(tmp_path / "console.log", overlay), "kvm"
    )
    document = etree.fromstring(xml.encode())
    assert document.findtext("os/loader") == str(OVMF.code)
    assert document.find("features/smm") is None


def test_domain_xml_defines_on_libvirts_test_driver(cell):
    import libvirt

    family, plan, domain, files, _ = cell
    connection = libvirt.open("test:///default")
    try:
        defined = connection.defineXML(family.domain_xml(plan, domain, files, "kvm"))
        assert defined.name() == domain
        defined.undefine()
    finally:
        connection.close()


def test_a_tcg_host_is_refused_naming_the_image(cell):
    family, plan, domain, files, _ = cell
    with pytest.raises(ConfigurationError, match="image win11-24h2: Windows guests need a KVM host"):
        family.domain_xml(plan, domain, files, "qemu")


def test_the_nvram_copy_is_left_for_the_cell_to_remove(cell):
    family, _, _, files, _ = cell
    assert family.host_leftovers(files) == (nvram_path(files.overlay),)
    assert family.host_leftovers(files)[0].parent == files.overlay.parent


# -- crash reports ---------------------------------------------------------------------------------


def write_panics(evidence: Path, *payload_files: str) -> None:
    """panic.json as the domain cell writes it, from recorded GUEST_PANICKED payloads."""
    evidence.mkdir(parents=True, exist_ok=True)
    recorded = [
        panic_details(1795600000 + index, 0, (PANIC_FIXTURES / name).read_text()).as_dict()
        for index, name in enumerate(payload_files)
    ]
    (evidence / "panic.json").write_text(json.dumps(recorded))


def test_crash_report_from_the_guest_panicked_payload(tmp_path):
    evidence = tmp_path / "cell"
    write_panics(evidence, "guest-panicked-hotplug-0x3e.json", "guest-panicked-no-info.json")
    (evidence / "console.log").write_text("")
    report = WindowsFamily.crash_report(None, evidence / "console.log", "")  # needs nothing of its own
    assert report is not None
    assert report["title"] == "0x3E MULTIPROCESSOR_CONFIGURATION_NOT_SUPPORTED"
    assert report["source"] == "guest_panicked_event"
    assert report["fatal"] is True


def test_crash_report_from_the_domain_log_when_no_event_came(tmp_path, cell):
    family = cell[0]
    evidence = tmp_path / "cell"
    evidence.mkdir()
    (evidence / "console.log").write_text("")
    log = (PANIC_FIXTURES / "domain-log-hotplug-0x3e.log").read_text()
    report = family.crash_report(evidence / "console.log", log)
    assert report is not None
    assert report["stop_code"] == "0x3E"
    assert report["source"] == "domain_log"


def test_crash_report_confirmed_by_recorded_events_and_a_fetched_dump(tmp_path, cell):
    family = cell[0]
    evidence = tmp_path / "cell"
    evidence.mkdir()
    (evidence / "console.log").write_text("")
    events = parse_events((EVENT_FIXTURES / "bugcheck-1001-0x50.xml").read_text())
    (evidence / SYSTEM_EVENTS_FILE).write_text(json.dumps([event.as_dict() for event in events]))
    (evidence / "minidump-112526-7031-01.dmp").write_bytes(
        build_dump(0x50, (0xFFFF840500000000, 0, SENSOR.base + 0x35A1E, 2), [NT, HAL, SENSOR], [])
    )
    report = family.crash_report(evidence / "console.log", "")
    assert report is not None
    assert report["title"] == "0x50 PAGE_FAULT_IN_NONPAGED_AREA in csagent.sys"
    assert report["module"] == "csagent.sys"
    assert report["confirmed_by"] == ["event_1001"]


def test_no_evidence_no_crash_report(tmp_path, cell):
    family = cell[0]
    (tmp_path / "console.log").write_text("")
    assert family.crash_report(tmp_path / "console.log", "") is None


def test_the_panic_with_details_wins_over_a_later_one_without(tmp_path):
    write_panics(tmp_path, "guest-panicked-kubevirt-test.json", "guest-panicked-no-info.json")
    assert last_panic(tmp_path / "panic.json") == json.loads(
        (PANIC_FIXTURES / "guest-panicked-kubevirt-test.json").read_text()
    )
    (tmp_path / "panic.json").write_text("not json")
    assert last_panic(tmp_path / "panic.json") is None


# -- what the channel is made with -----------------------------------------------------------------


def test_credentials_fall_back_to_the_definitions_defaults(tmp_path):
    record = windows_record(tmp_path)
    assert image_credentials(record) == ("testbed", "Testbed-Passw0rd!")
    custom = record.model_copy(update={"guest_username": "lab", "guest_password": "Other-Passw0rd"})
    assert image_credentials(custom) == ("lab", "Other-Passw0rd")


def test_the_sensor_service_is_the_packages_health_check(cell, tmp_path):
    _, plan, _, _, context = cell
    assert sensor_service(plan, context) == "CSAgent"
    twin = replace(plan, cell_id="win11-24h2+control", control_of=plan.cell_id)
    assert sensor_service(twin, context) is None


def test_a_health_check_that_is_no_service_name_is_refused_when_the_candidate_is_loaded(tmp_path):
    record = windows_record(tmp_path / "images")
    candidate = write_candidate(tmp_path / "candidate", health_check="sc query CSAgent | findstr RUNNING")
    with pytest.raises(ConfigurationError, match=r"artifacts\.0: .*health_check 'sc query CSAgent"):
        run_context(tmp_path, record, candidate)
