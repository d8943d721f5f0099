"""In-toto Statements about a gate run, built as plain JSON data (no protobuf layer: integers stay
integers, and the bytes that are signed are exactly the bytes a verifier parses).

- per run, a Statement v1 with the test-result predicate: result PASSED, WARNED (every cell passed,
  some with warnings) or FAILED; configuration = the matrix and the image digests; the cells as tests;
- per gate decision, a SLSA Verification Summary (VSA v1): subject = every artifact by sha256,
  verifier, policy = the matrix and its digest, verificationResult, timeVerified, and the per-run
  statement as input attestation.

An inconclusive (or canceled) run yields no statement at all: the test-result predicate has no
word for "no answer", and a FAILED statement would blame the candidate for the testbed's trouble.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from orchestrator.attest.run_facts import RunFacts
from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, RunVerdict

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
GATE_PASSED_LEVEL = "TESTBED_GATE_PASSED"  # custom SlsaResult (custom values must not start with SLSA_)
FAILED_LEVEL = "FAILED"
PASSED = "PASSED"
FAILED = "FAILED"
WARNED = "WARNED"


@dataclass(frozen=True)
class PolicyRef:
    """The matrix a gate ran: where it is and its sha256."""

    uri: str
    sha256: str


def rfc3339(seconds: float) -> str:
    """A UTC timestamp as the in-toto Timestamp field type wants it (RFC 3339, ``Z``)."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_uri(name: str, version: str) -> str:
    """The candidate as a package URL: what ``slsa-verifier verify-vsa --resource-uri`` compares."""
    return f"pkg:generic/{quote(name, safe='.-_')}@{quote(version, safe='.-_~+')}"


def subjects(facts: RunFacts) -> list[dict[str, Any]]:
    """Every artifact by sha256; the name is informative only (verifiers match digests)."""
    return [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(facts.artifacts.items())]


def statement_bytes(statement: dict[str, Any]) -> bytes:
    """The exact payload that is signed: compact, key-sorted JSON, UTF-8."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def result_of(facts: RunFacts) -> str | None:
    """The test-result ``result`` for a run, or None when the run gave no answer."""
    if facts.verdict is RunVerdict.FAILED:
        return FAILED
    if facts.verdict is RunVerdict.PASSED:
        return WARNED if any(cell.warned for cell in facts.cells) else PASSED
    return None


def _configuration(facts: RunFacts, matrix: PolicyRef) -> list[dict[str, Any]]:
    configuration: list[dict[str, Any]] = [
        {
            "name": f"matrix:{facts.matrix_name}" if facts.matrix_name else "matrix",
            "uri": matrix.uri,
            "digest": {"sha256": matrix.sha256},
            "annotations": {"cells": len(facts.cells)},
        }
    ]
    kernels = {cell.image: cell.kernel for cell in facts.cells}
    for image, digest in sorted(facts.image_digests().items()):
        descriptor: dict[str, Any] = {"name": f"image:{image}", "digest": {"sha256": digest}}
        if kernels.get(image):
            descriptor["annotations"] = {"kernel": kernels[image]}
        configuration.append(descriptor)
    return configuration


def build_test_result_statement(
    facts: RunFacts, matrix: PolicyRef, run_url: str | None = None
) -> dict[str, Any] | None:
    """The per-run test-result Statement, or None for an inconclusive run."""
    result = result_of(facts)
    if result is None:
        return None
    passed = [c.cell_id for c in facts.cells if c.outcome == CellOutcome.PASSED and not c.warned]
    warned = [c.cell_id for c in facts.cells if c.outcome == CellOutcome.PASSED and c.warned]
    failed = [c.cell_id for c in facts.cells if c.outcome in CANDIDATE_FAILURES]
    predicate: dict[str, Any] = {
        "result": result,
        "configuration": _configuration(facts, matrix),
        "passedTests": passed,
        "warnedTests": warned,
        "failedTests": failed,
    }
    if run_url:
        predicate["url"] = run_url
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(facts),
        "predicateType": TEST_RESULT_PREDICATE,
        "predicate": predicate,
    }


def build_vsa_statement(
    facts: RunFacts,
    *,
    verifier_id: str,
    verifier_version: str,
    policy: PolicyRef,
    input_attestations: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """The gate decision as a SLSA VSA v1, or None for an inconclusive run.

    ``timeVerified`` is when the gate decided (the run's end), so freshness is counted from the
    test, not from whenever somebody signed an old run.
    """
    if facts.verdict is RunVerdict.INCONCLUSIVE:
        return None
    passed = facts.verdict is RunVerdict.PASSED
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(facts),
        "predicateType": VSA_PREDICATE,
        "predicate": {
            "verifier": {"id": verifier_id, "version": {"endpoint-testbed": verifier_version}},
            "timeVerified": rfc3339(facts.finished_at),
            "resourceUri": resource_uri(facts.candidate_name, facts.candidate_version),
            "policy": {"uri": policy.uri, "digest": {"sha256": policy.sha256}},
            "inputAttestations": input_attestations,
            "verificationResult": PASSED if passed else FAILED,
            "verifiedLevels": [GATE_PASSED_LEVEL if passed else FAILED_LEVEL],
            "slsaVersion": "1.0",
        },
    }
