"""JUnit XML for CI: one test case per cell; failures carry the crash title; digests bind the run."""

import xml.etree.ElementTree as ET

import pytest

from api.cli.junit import junit_xml
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunResult

pytestmark = pytest.mark.unit

PANIC_TITLE = (
    "BUG: kernel NULL pointer dereference, address: 0000000000000010 in tbs_match_template [testbed_sensor]"
)
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
