"""Stop codes from what the hypervisor reports: libvirt's domain log line and QEMU's GUEST_PANICKED."""

import json

import pytest

from orchestrator.guests.windows.panic import (
    Bugcheck,
    BugcheckSource,
    bugcheck_from_domain_log,
    bugcheck_from_panic_info,
)

pytestmark = pytest.mark.unit


def panic_fixture(fixtures_dir, name: str) -> str:
    return (fixtures_dir / "windows" / "panic" / name).read_text()


def test_real_libvirt_log_line(fixtures_dir):
    bugcheck = bugcheck_from_domain_log(panic_fixture(fixtures_dir, "domain-log-hotplug-0x3e.log"))
    assert bugcheck == Bugcheck(0x3E, (0x46D359BBDFF, 0x56D359BBDFF, 0, 0), BugcheckSource.DOMAIN_LOG)


def test_timestamped_log_line_among_others(fixtures_dir):
    bugcheck = bugcheck_from_domain_log(panic_fixture(fixtures_dir, "domain-log-kubevirt-test.log"))
    assert bugcheck is not None
    assert (bugcheck.code, bugcheck.parameters) == (0x5A, (1, 2, 0, 0))


def test_the_last_panic_line_wins():
    log = (
        "2026-11-25 17:00:00.000+0000: panic hyper-v: "
        "arg1='0x7e', arg2='0xc0000005', arg3='0x1', arg4='0x2', arg5='0x3'\n"
        "2026-11-25 17:05:00.000+0000: starting up libvirt version: 9.0.0\n"
        "2026-11-25 17:06:00.000+0000: panic hyper-v: "
        "arg1='0x50', arg2='0xffff', arg3='0x0', arg4='0xfffff8', arg5='0x2'\n"
    )
    bugcheck = bugcheck_from_domain_log(log)
    assert bugcheck is not None
    assert bugcheck.code == 0x50
    assert bugcheck.parameters_hex() == ["0xffff", "0x0", "0xfffff8", "0x2"]


@pytest.mark.parametrize("log", ["", "2026-11-25 17:00:00.000+0000: shutting down, reason=crashed\n"])
def test_no_panic_line(log):
    assert bugcheck_from_domain_log(log) is None


@pytest.mark.parametrize(
    ("fixture", "code", "parameters"),
    [
        ("guest-panicked-hotplug-0x3e.json", 0x3E, (0x46D359BBDFF, 0x56D359BBDFF, 0, 0)),
        ("guest-panicked-kubevirt-test.json", 0x5A, (1, 2, 3, 4)),
        ("guest-panicked-kubevirt-0xc0000420.json", 0xC0000420, (0, 0, 0, 0)),
    ],
)
def test_guest_panicked_payloads(fixtures_dir, fixture, code, parameters):
    data = json.loads(panic_fixture(fixtures_dir, fixture))
    for payload in (data, data["info"]):  # the event's data object, or its info member alone
        bugcheck = bugcheck_from_panic_info(payload)
        assert bugcheck == Bugcheck(code, parameters, BugcheckSource.PANIC_EVENT)


def test_log_line_and_event_of_one_crash_agree(fixtures_dir):
    from_log = bugcheck_from_domain_log(panic_fixture(fixtures_dir, "domain-log-hotplug-0x3e.log"))
    from_event = bugcheck_from_panic_info(
        json.loads(panic_fixture(fixtures_dir, "guest-panicked-hotplug-0x3e.json"))
    )
    assert from_log is not None
    assert from_event is not None
    assert (from_log.code, from_log.parameters) == (from_event.code, from_event.parameters)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"action": "pause"},  # a guest without crash MSRs
        {"action": "pause", "info": {"type": "s390", "core": 0}},
        {"info": {"type": "hyper-v", "arg1": 0, "arg2": 5}},  # no stop code
        {"info": {"type": "hyper-v", "arg1": "not a number"}},
        {"info": {"type": "hyper-v", "arg1": -1}},
        {"info": {"type": "hyper-v", "arg1": True}},
    ],
)
def test_payloads_without_a_stop_code(payload):
    assert bugcheck_from_panic_info(payload) is None


def test_the_qmp_reference_example_has_no_stop_code(fixtures_dir):
    assert (
        bugcheck_from_panic_info(json.loads(panic_fixture(fixtures_dir, "guest-panicked-no-info.json")))
        is None
    )
