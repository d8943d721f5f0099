"""JUnit XML for CI systems: one test case per cell, failures carry the crash title."""

import xml.etree.ElementTree as ET

from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome
from orchestrator.core.records import RunResult


def junit_xml(result: RunResult) -> str:
    failures = sum(cell.outcome in CANDIDATE_FAILURES for cell in result.cells)
    errors = sum(cell.outcome is CellOutcome.INFRA_ERROR for cell in result.cells)
    skipped = sum(cell.outcome is CellOutcome.CANCELED for cell in result.cells)
    suite = ET.Element(
        "testsuite",
        name=f"endpoint-testbed.{result.matrix_name}",
        tests=str(len(result.cells)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{result.finished_at - result.started_at:.1f}",
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="run_id", value=result.run_id)
    ET.SubElement(properties, "property", name="verdict", value=str(result.verdict))
    ET.SubElement(
        properties, "property", name="candidate", value=f"{result.candidate_name} {result.candidate_version}"
    )
    for artifact, digest in sorted(result.artifact_digests.items()):
        ET.SubElement(properties, "property", name=f"sha256:{artifact}", value=digest)
    for cell in result.cells:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{result.matrix_name}.{cell.image}",
            name=cell.cell_id,
            time=f"{cell.seconds:.1f}",
        )
        message = cell.crash_title or cell.reason
        body = f"{cell.outcome}: {cell.reason}\nevidence: {cell.evidence_dir or '-'}"
        if cell.outcome in CANDIDATE_FAILURES:
            ET.SubElement(case, "failure", message=message, type=str(cell.outcome)).text = body
        elif cell.outcome is CellOutcome.INFRA_ERROR:
            ET.SubElement(case, "error", message=message, type=str(cell.outcome)).text = body
        elif cell.outcome is CellOutcome.CANCELED:
            ET.SubElement(case, "skipped", message=message)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
