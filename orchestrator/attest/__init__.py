"""Signed verdicts: only bytes that passed the gate can be published.

- ``attest_run`` signs a finished run: an in-toto test-result statement and a SLSA VSA, in DSSE
  envelopes (ECDSA P-256), written to ``<run_dir>/attestations/``;
- ``verify_files`` / ``verify_attestation`` check such a VSA against the exact artifact bytes, in
  the order documented in ``policy``; a refusal is a ``Verification`` result, not an exception;
- ``sign_candidate`` / ``verify_signed_candidate`` sign and check a candidate's manifest, so a
  file changed after signing is refused before any VM starts;
- ``create_key_pair``, ``load_signer``, ``load_trusted_key`` handle the keys.

Errors: bad input (run.json, key files, passwords, an unsigned or altered candidate) raises
``ConfigurationError`` naming the file or field; unreadable files in verification raise ``OSError``.
"""

from orchestrator.attest.candidate_signature import (
    MANIFEST_PAYLOAD_TYPE,
    SIGNATURE_NAME,
    sign_candidate,
    verify_signed_candidate,
)
from orchestrator.attest.dsse import IN_TOTO_PAYLOAD_TYPE, TrustedKey, pae
from orchestrator.attest.keys import (
    DEFAULT_PASSWORD_ENV,
    KeyPair,
    create_key_pair,
    key_id,
    load_signer,
    load_trusted_key,
    password_from_env,
)
from orchestrator.attest.policy import Check, Verification, VerificationPolicy, verify_attestation
from orchestrator.attest.run_attestation import (
    DEFAULT_VERIFIER_ID,
    AttestationPaths,
    attest_run,
)
from orchestrator.attest.sslib import Signer
from orchestrator.attest.statements import (
    STATEMENT_TYPE,
    TEST_RESULT_PREDICATE,
    VSA_PREDICATE,
)
from orchestrator.attest.verify_files import read_revocation_list, verify_files

__all__ = [
    "DEFAULT_PASSWORD_ENV",
    "DEFAULT_VERIFIER_ID",
    "IN_TOTO_PAYLOAD_TYPE",
    "MANIFEST_PAYLOAD_TYPE",
    "SIGNATURE_NAME",
    "STATEMENT_TYPE",
    "TEST_RESULT_PREDICATE",
    "VSA_PREDICATE",
    "AttestationPaths",
    "Check",
    "KeyPair",
    "Signer",
    "TrustedKey",
    "Verification",
    "VerificationPolicy",
    "attest_run",
    "create_key_pair",
    "key_id",
    "load_signer",
    "load_trusted_key",
    "pae",
    "password_from_env",
    "read_revocation_list",
    "sign_candidate",
    "verify_attestation",
    "verify_files",
    "verify_signed_candidate",
]
