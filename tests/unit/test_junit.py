"""JUnit XML for CI: one test case per cell; failures carry the crash title; digests bind the run."""

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from api.cli.junit import junit_xml
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunResult

pytestmark = pytest.mark.unit

PANIC_TITLE = (
    "BUG: kernel NULL pointer dereference, address: 0000000000000010 in tbs_match_template [testbed_sensor]"
)
NULL_DEREF = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
# What a hostile guest could print into a crash title: NUL, a clear-screen, a window title, markup,
# lone surrogates and a non-character.
HOSTILE = "BUG: NUL\x00 ESC\x1b[2J\x1b]0;pwned\x07 <script>alert('x')</script> & \ud800\udfff \ufffe in f [m]"
DIGESTS = {"sensor-linux": "d" * 64, "channel-291": "e" * 64}


def cell(cell_id, outcome, reason, crash=None, seconds=12.34):
    return CellResult(
        cell_id=cell_id,
        image=cell_id.split("+")[0],
        kernel="6.1.0-56-amd64",
        host="local",
        outcome=outcome,
        reason=reason,
        crash=crash,
        evidence_dir=f"/runs/r1/cells/{cell_id}",
        started_at=100.0,
        finished_at=100.0 + seconds,
    )


@pytest.fixture
def result():
    return RunResult(
        run_id="20261125-171500-ab12",
        matrix_name="linux-kernels",
        candidate_name="sensor",
        candidate_version="7.1.0",
        artifact_digests=DIGESTS,
        verdict=RunVerdict.FAILED,
        summary="2 of 6 cell(s) failed",
        cells=[
            cell("debian12-kernel-n", CellOutcome.PASSED, "3 boot(s) ready and stable"),
            cell(
                "debian12-kernel-n1",
                CellOutcome.CRASHED,
                "the hypervisor reported a guest crash (panicked)",
                crash={"title": PANIC_TITLE},
            ),
            cell("debian12-kernel-n1+dlp", CellOutcome.HUNG, "boot 2 did not become ready within 300s"),
            cell(
                "debian12-kernel-n+dlp",
                CellOutcome.INFRA_ERROR,
                "Provision: host local: cannot create overlay",
            ),
            cell("debian12-kernel-n+av", CellOutcome.CANCELED, "fail-fast: debian12-kernel-n1 ended crashed"),
            cell(
                "debian12-kernel-n1+av",
                CellOutcome.BOOT_LOOP,
                "the guest reset 3 time(s) without becoming ready",
            ),
        ],
        evidence_dir="/runs/r1",
        started_at=1000.0,
        finished_at=1123.45,
    )


def parse(result) -> ET.Element:
    text = junit_xml(result)
    assert text.startswith("<?xml version='1.0' encoding='utf-8'?>\n<testsuite")
    assert text.endswith("</testsuite>\n")
    return ET.fromstring(text.split("\n", 1)[1])


def test_suite_counts(result):
    suite = parse(result)
    assert suite.tag == "testsuite"
    assert suite.get("name") == "endpoint-testbed.linux-kernels"
    assert {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")} == {
        "tests": "6",
        "failures": "3",
        "errors": "1",
        "skipped": "1",
    }
    assert suite.get("time") == "123.5"
    assert len(suite.findall("testcase")) == 6


def test_properties_bind_the_run_to_the_candidate(result):
    properties = {p.get("name"): p.get("value") for p in parse(result).findall("properties/property")}
    assert properties == {
        "run_id": "20261125-171500-ab12",
        "verdict": "failed",
        "candidate": "sensor 7.1.0",
        "sha256:channel-291": "e" * 64,
        "sha256:sensor-linux": "d" * 64,
        # the failures grouped across cells: candidate failures first (ties by title), then infrastructure
        "failure_group.1": f"crashed on 1 of 6 cells: {PANIC_TITLE}",
        "failure_group.1.cells": "debian12-kernel-n1",
        "failure_group.2": "hung on 1 of 6 cells: boot N did not become ready within Ns",
        "failure_group.2.cells": "debian12-kernel-n1+dlp",
        "failure_group.3": "boot_loop on 1 of 6 cells: the guest reset N time(s) without becoming ready",
        "failure_group.3.cells": "debian12-kernel-n1+av",
        "failure_group.4": "infra_error on 1 of 6 cells: Provision: host local: cannot create overlay",
        "failure_group.4.cells": "debian12-kernel-n+dlp",
    }


@pytest.mark.parametrize(
    ("cell_id", "element", "message", "kind"),
    [
        ("debian12-kernel-n", None, None, None),
        ("debian12-kernel-n1", "failure", PANIC_TITLE, "crashed"),
        ("debian12-kernel-n1+dlp", "failure", "boot 2 did not become ready within 300s", "hung"),
        ("debian12-kernel-n1+av", "failure", "the guest reset 3 time(s) without becoming ready", "boot_loop"),
        ("debian12-kernel-n+dlp", "error", "Provision: host local: cannot create overlay", "infra_error"),
        ("debian12-kernel-n+av", "skipped", "fail-fast: debian12-kernel-n1 ended crashed", None),
    ],
)
def test_each_cell_is_a_test_case(result, cell_id, element, message, kind):
    (case,) = [c for c in parse(result).findall("testcase") if c.get("name") == cell_id]
    assert case.get("classname") == f"linux-kernels.{cell_id.split('+')[0]}"
    assert case.get("time") == "12.3"
    children = list(case)
    if element is None:
        assert children == []
        return
    (child,) = children
    assert (child.tag, child.get("message"), child.get("type")) == (element, message, kind)
    if element != "skipped":
        assert child.text.splitlines() == [
            f"{kind}: {next(c.reason for c in result.cells if c.cell_id == cell_id)}",
            f"evidence: /runs/r1/cells/{cell_id}",
        ]


def test_failure_message_is_the_crash_title_not_the_reason(result):
    (crashed,) = [c for c in parse(result).iter("testcase") if c.get("name") == "debian12-kernel-n1"]
    assert crashed.find("failure").get("message") == PANIC_TITLE
    assert "the hypervisor reported a guest crash (panicked)" in crashed.find("failure").text


def test_special_characters_survive(result):
    result.cells = [cell("a", CellOutcome.CRASHED, 'reason <&> "quoted"', crash={"title": "BUG: x < y & z"})]
    case = parse(result).find("testcase")
    assert case.find("failure").get("message") == "BUG: x < y & z"
    assert case.find("failure").text.startswith('crashed: reason <&> "quoted"')


def test_an_empty_run_is_an_empty_suite(result):
    result.cells = []
    suite = parse(result)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "0",
        "0",
        "0",
        "0",
    )
    assert suite.findall("testcase") == []


def test_identical_failures_are_one_group_property(result):
    result.cells = [
        cell(
            f"n~v{i}",
            CellOutcome.CRASHED,
            "panicked",
            crash={"title": NULL_DEREF, "module": "testbed_sensor"},
        )
        for i in range(6)
    ] + [cell("n", CellOutcome.PASSED, "ok"), cell("n1", CellOutcome.PASSED, "ok")]
    properties = {p.get("name"): p.get("value") for p in parse(result).findall("properties/property")}
    groups = {name: value for name, value in properties.items() if name.startswith("failure_group.")}
    assert groups == {
        "failure_group.1": f"crashed on 6 of 8 cells: {NULL_DEREF}",
        "failure_group.1.cells": "n~v0, n~v1, n~v2, n~v3, n~v4, n~v5",
    }


def test_guest_text_with_nul_esc_and_surrogates_keeps_the_file_valid_xml(result):
    result.cells = [
        cell("a", CellOutcome.CRASHED, "reason: \x00\x1b[31m<b>", crash={"title": HOSTILE, "module": "m"}),
        cell("b", CellOutcome.INFRA_ERROR, "libvirt said \x1b]8;;http://x\x1b\\ <&> \x01"),
        cell("c", CellOutcome.CANCELED, "fail-fast \udc80"),
    ]
    text = junit_xml(result)
    assert "\x00" not in text
    assert "\x1b" not in text
    text.encode("utf-8")  # no lone surrogate: the file can be written as the UTF-8 it declares
    suite = parse(result)  # well-formed, or this raises
    failure = suite.find("testcase[@name='a']/failure")
    # text stays text: the title's markup is escaped by the serializer and read back verbatim
    assert failure.get("message") == "BUG: NUL? ESC <script>alert('x')</script> & ??  in f [m]"
    assert failure.text.startswith("crashed: reason: ?<b>")
    assert "<script>" not in text  # in the file, it is &lt;script&gt;
    error = suite.find("testcase[@name='b']/error")
    assert error.get("message") == "libvirt said  <&> ?"
    assert suite.find("testcase[@name='c']/skipped").get("message") == "fail-fast ?"
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert (
        properties["failure_group.1"]
        == "crashed on 1 of 3 cells: BUG: NUL? ESC <script>alert('x')</script> & ??  in f [m]"
    )


def test_the_suite_agrees_with_the_verdict_on_control_cells(result):
    result.cells = [
        cell("n", CellOutcome.INFRA_ERROR, "crashed, but its control twin failed too"),
        replace(
            cell("n.control", CellOutcome.CRASHED, "panicked", crash={"title": NULL_DEREF}), control_of="n"
        ),
        replace(
            cell("hang-image", CellOutcome.HUNG, "no readiness"),
            observed=CellOutcome.HUNG,
            expected_outcome=CellOutcome.HUNG,
        ),
    ]
    suite = parse(result)
    assert {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")} == {
        "tests": "2",  # the twin is evidence for n, not a test of its own
        "failures": "0",
        "errors": "1",
        "skipped": "0",
    }
    assert [c.get("name") for c in suite.findall("testcase")] == ["n", "hang-image"]
    (out,) = suite.find("testcase[@name='hang-image']")
    assert (out.tag, out.text.splitlines()[0]) == ("system-out", "control image: hung as expected")
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert properties["control:n"] == f"n.control without the candidate: crashed: {NULL_DEREF}"
    assert (
        properties["failure_group.1"]
        == "infra_error on 1 of 2 cells: crashed, but its control twin failed too"
    )
