"""Sign a finished run: the test-result statement and the VSA, written beside its evidence.

``<run_dir>/attestations/test-result.dsse.json``  per-run in-toto test-result statement (DSSE)
``<run_dir>/attestations/vsa.dsse.json``          the gate decision as a SLSA VSA (DSSE)

An inconclusive or canceled run gets neither (see ``statements``); a failed run gets both, with
FAILED results, which no verifier accepts for publishing.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from orchestrator.adapters.atomic_file import replace_file
from orchestrator.attest.dsse import IN_TOTO_PAYLOAD_TYPE, envelope_bytes, sign_envelope
from orchestrator.attest.run_facts import SHA256_HEX, RunFacts, run_facts
from orchestrator.attest.sslib import Signer
from orchestrator.attest.statements import (
    PolicyRef,
    build_test_result_statement,
    build_vsa_statement,
    statement_bytes,
)
from orchestrator.errors import ConfigurationError, InternalError

ATTESTATIONS_DIR = "attestations"
TEST_RESULT_NAME = "test-result.dsse.json"
VSA_NAME = "vsa.dsse.json"
DEFAULT_VERIFIER_ID = "urn:endpoint-testbed:gate"


@dataclass(frozen=True)
class AttestationPaths:
    """What ``attest_run`` wrote; for an inconclusive run nothing, and why."""

    directory: Path
    test_result: Path | None = None
    vsa: Path | None = None
    test_result_sha256: str | None = None  # sha256 of the signed statement (what a revocation names)
    vsa_sha256: str | None = None
    result: str | None = None  # PASSED / WARNED / FAILED of the test-result statement
    skipped: str | None = None  # why nothing was written

    def as_dict(self) -> dict[str, str | None]:
        return {
            "directory": str(self.directory),
            "test_result": str(self.test_result) if self.test_result else None,
            "vsa": str(self.vsa) if self.vsa else None,
            "test_result_sha256": self.test_result_sha256,
            "vsa_sha256": self.vsa_sha256,
            "result": self.result,
            "skipped": self.skipped,
        }


def testbed_version() -> str:
    try:
        return metadata.version("endpoint-testbed")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_run(run_dir: Path) -> RunFacts:
    path = run_dir / "run.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{path}: not found (is {run_dir} a run directory?)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: cannot read it as JSON: {exc}") from exc
    return run_facts(data, source=str(path))


def _write(path: Path, content: bytes) -> None:
    replace_file(path, content)  # never a half-written attestation


def attest_run(
    run_dir: Path,
    signer: Signer,
    *,
    verifier_id: str,
    matrix_digest: str,
    matrix_uri: str,
    image_digests: Mapping[str, str] | None = None,
) -> AttestationPaths:
    """Write the signed attestations of the finished run in ``run_dir`` (from its run.json).

    ``image_digests`` (image name -> sha256) fills in images whose digest run.json does not record.
    """
    if not SHA256_HEX.match(matrix_digest):
        raise ConfigurationError(f"matrix digest {matrix_digest!r} must be 64 lowercase hex digits (sha256)")
    facts = read_run(run_dir)
    if image_digests:
        facts = replace(
            facts,
            cells=tuple(
                replace(cell, image_digest=cell.image_digest or image_digests.get(cell.image))
                for cell in facts.cells
            ),
        )
    directory = run_dir / ATTESTATIONS_DIR
    policy = PolicyRef(uri=matrix_uri, sha256=matrix_digest)
    evidence = Path(facts.evidence_dir) if facts.evidence_dir else None
    run_url = evidence.as_uri() if evidence and evidence.is_absolute() else None
    test_result = build_test_result_statement(facts, policy, run_url)
    if test_result is None:
        return AttestationPaths(
            directory, skipped=f"run {facts.run_id} is {facts.verdict}: no verdict to attest"
        )
    directory.mkdir(exist_ok=True)
    test_result_payload = statement_bytes(test_result)
    test_result_envelope = envelope_bytes(sign_envelope(test_result_payload, IN_TOTO_PAYLOAD_TYPE, signer))
    test_result_path = directory / TEST_RESULT_NAME
    _write(test_result_path, test_result_envelope)
    vsa = build_vsa_statement(
        facts,
        verifier_id=verifier_id,
        verifier_version=testbed_version(),
        policy=policy,
        input_attestations=[
            {
                "uri": test_result_path.resolve().as_uri(),
                "digest": {"sha256": hashlib.sha256(test_result_envelope).hexdigest()},
                "annotations": {"statementSha256": hashlib.sha256(test_result_payload).hexdigest()},
            }
        ],
    )
    if vsa is None:  # a run with a test result always has a decision
        raise InternalError(f"run {facts.run_id}: a test result but no gate decision")
    vsa_payload = statement_bytes(vsa)
    vsa_path = directory / VSA_NAME
    _write(vsa_path, envelope_bytes(sign_envelope(vsa_payload, IN_TOTO_PAYLOAD_TYPE, signer)))
    return AttestationPaths(
        directory,
        test_result=test_result_path,
        vsa=vsa_path,
        test_result_sha256=hashlib.sha256(test_result_payload).hexdigest(),
        vsa_sha256=hashlib.sha256(vsa_payload).hexdigest(),
        result=str(test_result["predicate"]["result"]),
    )
