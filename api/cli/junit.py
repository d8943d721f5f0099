"""JUnit XML for CI systems: one test case per cell, failures carry the crash title, the suite's
properties bind the run to the candidate and name the failures grouped across cells.

Crash titles and reasons carry text a guest printed. Every attribute and text goes through
``sanitize.for_xml``, so the file stays well-formed XML whatever the guest printed (NUL, ESC, lone
surrogates); ``<`` and ``&`` are the serializer's to escape.

The test cases agree with the run's verdict: a control image that did what it is there to do
passes, and a control twin (the cell re-run without the candidate) is evidence for its cell, named in
the properties rather than counted as a test of its own.
"""

import xml.etree.ElementTree as ET

from orchestrator.core.grouping import describe, group_failures, verdict_cells
from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome
from orchestrator.core.records import CellResult, RunResult
from orchestrator.core.sanitize import for_xml


def _element(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {key: for_xml(value) for key, value in attributes.items()})
    if text is not None:
        element.text = for_xml(text)
    return element


def _property(properties: ET.Element, name: str, value: str) -> None:
    _element(properties, "property", name=name, value=value)


def junit_xml(result: RunResult) -> str:
    cells = verdict_cells(result.cells)
    outcomes = [cell.verdict_outcome for cell in cells]
    suite = ET.Element("testsuite")
    for key, value in {
        "name": f"endpoint-testbed.{result.matrix_name}",
        "tests": str(len(cells)),
        "failures": str(sum(outcome in CANDIDATE_FAILURES for outcome in outcomes)),
        "errors": str(outcomes.count(CellOutcome.INFRA_ERROR)),
        "skipped": str(outcomes.count(CellOutcome.CANCELED)),
        "time": f"{result.finished_at - result.started_at:.1f}",
    }.items():
        suite.set(key, for_xml(value))
    _properties(suite, result, len(cells))
    for cell in cells:
        _test_case(suite, result.matrix_name, cell)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _properties(suite: ET.Element, result: RunResult, total: int) -> None:
    properties = ET.SubElement(suite, "properties")
    _property(properties, "run_id", result.run_id)
    _property(properties, "verdict", str(result.verdict))
    _property(properties, "candidate", f"{result.candidate_name} {result.candidate_version}")
    for artifact, digest in sorted(result.artifact_digests.items()):
        _property(properties, f"sha256:{artifact}", digest)
    for index, group in enumerate(group_failures(result.cells), start=1):
        _property(properties, f"failure_group.{index}", describe(group, total))
        _property(properties, f"failure_group.{index}.cells", ", ".join(group.cells))
    for twin in result.cells:
        if twin.control_of is not None:
            _property(
                properties,
                f"control:{twin.control_of}",
                f"{twin.cell_id} without the candidate: {twin.outcome}: {twin.crash_title or twin.reason}",
            )


def _test_case(suite: ET.Element, matrix_name: str, cell: CellResult) -> None:
    case = _element(
        suite,
        "testcase",
        classname=f"{matrix_name}.{cell.image}",
        name=cell.cell_id,
        time=f"{cell.seconds:.1f}",
    )
    message = cell.crash_title or cell.reason
    body = f"{cell.outcome}: {cell.reason}\nevidence: {cell.evidence_dir or '-'}"
    outcome = cell.verdict_outcome
    if outcome in CANDIDATE_FAILURES:
        _element(case, "failure", body, message=message, type=str(cell.outcome))
    elif outcome is CellOutcome.INFRA_ERROR:
        _element(case, "error", body, message=message, type=str(cell.outcome))
    elif outcome is CellOutcome.CANCELED:
        _element(case, "skipped", message=message)
    elif cell.as_expected:
        _element(case, "system-out", f"control image: {cell.outcome} as expected\n{body}")
