"""Whether a signed gate verdict covers the exact artifact bytes: the check a publish step runs.

The checks run in this order, and the first that fails is the reason given (after a first
``envelope`` check that the bytes are a DSSE envelope at all):

1. ``payload_type``  the envelope carries an in-toto statement;
2. ``signature``     a *trusted* key (configured, never the keyid the envelope claims) signed it;
3. ``payload``       exactly the verified bytes parse as one JSON object (duplicate keys refused);
4. ``statement``     ``_type`` is exactly in-toto Statement v1;
5. ``predicate``     ``predicateType`` is exactly the SLSA VSA v1;
6. ``subject``       every artifact, stream-hashed, has its sha256 among the subjects (names are
                     never compared: a renamed file is the same bytes, a same-named one may not be);
7. ``result``        verificationResult is PASSED;
8. ``verifier``      verifier.id is the one required (if required);
9. ``policy``        the policy (matrix) digest is the one required (if required);
10. ``freshness``    timeVerified is no older than the maximum age (if given), and not in the future;
11. ``revocation``   neither the statement nor its input attestations are on the revocation list.

Refusals are results (``Verification``), not exceptions; a file that cannot be read is an
exception (``OSError``) for the caller to report as "could not check".
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.attest.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    MalformedEnvelopeError,
    TrustedKey,
    parse_envelope,
    signing_key,
)
from orchestrator.attest.statements import PASSED, STATEMENT_TYPE, VSA_PREDICATE


class Check(StrEnum):
    """The checks, in the order they run."""

    ENVELOPE = "envelope"  # the attestation is a DSSE envelope at all
    PAYLOAD_TYPE = "payload_type"  # payloadType is application/vnd.in-toto+json
    SIGNATURE = "signature"  # a trusted key made one of the signatures
    PAYLOAD = "payload"  # the verified bytes are one JSON object
    STATEMENT = "statement"  # _type is in-toto Statement v1
    PREDICATE = "predicate"  # predicateType is the SLSA VSA v1
    SUBJECT = "subject"  # every artifact's sha256 is a subject
    RESULT = "result"  # verificationResult is PASSED
    VERIFIER = "verifier"  # verifier.id is the required one
    POLICY = "policy"  # the policy digest is the required one
    FRESHNESS = "freshness"  # timeVerified is recent enough, and not in the future
    REVOCATION = "revocation"  # the verdict was not revoked


@dataclass(frozen=True)
class VerificationPolicy:
    """What a publish step requires. ``now`` is passed in, so freshness is testable."""

    trusted_keys: tuple[TrustedKey, ...]
    now: datetime  # timezone-aware
    verifier_id: str | None = None
    policy_sha256: str | None = None
    max_age: timedelta | None = None
    revoked: frozenset[str] = frozenset()  # sha256 of statements (or input attestations)
    clock_skew: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Verification:
    """The answer: verified, or the first check that refused and why."""

    verified: bool
    reason: str
    failed_check: Check | None = None
    key_id: str | None = None
    statement_sha256: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # path -> sha256, once hashed
    statement: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "reason": self.reason,
            "failed_check": str(self.failed_check) if self.failed_check else None,
            "key_id": self.key_id,
            "statement_sha256": self.statement_sha256,
            "artifacts": self.artifacts,
        }


class _RefusedError(Exception):
    def __init__(self, check: Check, reason: str) -> None:
        super().__init__(reason)
        self.check = check
        self.reason = reason


def normalize_digest(text: str) -> str:
    """``sha256:ABC…`` or ``abc…`` -> ``abc…``."""
    text = text.strip().lower()
    return text.removeprefix("sha256:")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        # Two parsers may pick different values for a repeated key: refuse the ambiguity.
        raise ValueError(f"duplicate key(s) {', '.join(duplicates)}")
    return dict(pairs)


def _parse_statement(payload: bytes) -> dict[str, Any]:
    try:
        statement = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _RefusedError(Check.PAYLOAD, f"the signed payload is not valid JSON: {exc}") from exc
    if not isinstance(statement, dict):
        raise _RefusedError(Check.PAYLOAD, "the signed payload is not a JSON object")
    return statement


def _subject_digests(statement: dict[str, Any]) -> set[str]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise _RefusedError(Check.SUBJECT, "the statement has no subjects")
    digests = set()
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, dict) else None
        value = digest.get("sha256") if isinstance(digest, dict) else None
        if isinstance(value, str):
            digests.add(value.lower())
    return digests


def _predicate(statement: dict[str, Any]) -> dict[str, Any]:
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise _RefusedError(Check.RESULT, "the statement has no predicate object")
    return predicate


def _time_verified(predicate: dict[str, Any]) -> datetime:
    text = predicate.get("timeVerified")
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise _RefusedError(Check.FRESHNESS, f"timeVerified {text!r} is not an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise _RefusedError(Check.FRESHNESS, f"timeVerified {text!r} has no time zone")
    return moment


def _check_freshness(predicate: dict[str, Any], policy: VerificationPolicy) -> None:
    moment = _time_verified(predicate)
    if moment > policy.now + policy.clock_skew:
        raise _RefusedError(Check.FRESHNESS, f"timeVerified {moment.isoformat()} is in the future")
    if policy.max_age is not None and policy.now - moment > policy.max_age:
        age_days = (policy.now - moment).total_seconds() / 86400
        raise _RefusedError(
            Check.FRESHNESS,
            f"the verdict is {age_days:.1f} days old, older than the maximum of "
            f"{policy.max_age.total_seconds() / 86400:g} days (gate the artifact again)",
        )


def _input_attestation_digests(predicate: dict[str, Any]) -> set[str]:
    inputs = predicate.get("inputAttestations")
    found = set()
    for entry in inputs if isinstance(inputs, list) else []:
        if not isinstance(entry, dict):
            continue
        digest, annotations = entry.get("digest"), entry.get("annotations")
        for value in (
            digest.get("sha256") if isinstance(digest, dict) else None,
            annotations.get("statementSha256") if isinstance(annotations, dict) else None,
        ):
            if isinstance(value, str):
                found.add(value.lower())
    return found


def _check_statement(
    statement: dict[str, Any],
    *,
    statement_sha256: str,
    artifacts: Sequence[Path],
    hash_file: Callable[[Path], str],
    policy: VerificationPolicy,
    hashed: dict[str, str],
) -> None:
    """Checks 4 to 11 on the parsed, verified statement."""
    if statement.get("_type") != STATEMENT_TYPE:
        raise _RefusedError(Check.STATEMENT, f"_type is {statement.get('_type')!r}, not {STATEMENT_TYPE!r}")
    if statement.get("predicateType") != VSA_PREDICATE:
        raise _RefusedError(
            Check.PREDICATE, f"predicateType is {statement.get('predicateType')!r}, not {VSA_PREDICATE!r}"
        )
    subject_digests = _subject_digests(statement)
    for artifact in artifacts:
        digest = hash_file(artifact)
        hashed[str(artifact)] = digest
        if digest not in subject_digests:
            raise _RefusedError(
                Check.SUBJECT,
                f"{artifact} (sha256 {digest}) is not among the attested subjects: "
                "these bytes were not gated",
            )
    predicate = _predicate(statement)
    result = predicate.get("verificationResult")
    if result != PASSED:
        raise _RefusedError(Check.RESULT, f"verificationResult is {result!r}: the gate did not pass it")
    verifier = predicate.get("verifier")
    verifier_id = verifier.get("id") if isinstance(verifier, dict) else None
    if policy.verifier_id is not None and verifier_id != policy.verifier_id:
        raise _RefusedError(
            Check.VERIFIER, f"verifier.id is {verifier_id!r}, the policy requires {policy.verifier_id!r}"
        )
    if policy.policy_sha256 is not None:
        matrix = predicate.get("policy")
        digest_set = matrix.get("digest") if isinstance(matrix, dict) else None
        actual = digest_set.get("sha256") if isinstance(digest_set, dict) else None
        if not isinstance(actual, str) or actual.lower() != normalize_digest(policy.policy_sha256):
            raise _RefusedError(
                Check.POLICY,
                f"policy digest is sha256:{actual}, the policy requires "
                f"sha256:{normalize_digest(policy.policy_sha256)} (another matrix was gated)",
            )
    _check_freshness(predicate, policy)
    revoked = {normalize_digest(entry) for entry in policy.revoked}
    for digest in sorted(({statement_sha256} | _input_attestation_digests(predicate)) & revoked):
        raise _RefusedError(Check.REVOCATION, f"sha256:{digest} is on the revocation list")


def _trusted_payload(envelope: bytes, policy: VerificationPolicy) -> tuple[TrustedKey, bytes]:
    """Checks 1 and 2: the envelope's payload, if it is an in-toto statement a trusted key signed."""
    try:
        parsed = parse_envelope(envelope)
    except MalformedEnvelopeError as exc:
        raise _RefusedError(Check.ENVELOPE, f"not a DSSE envelope: {exc}") from exc
    if parsed.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _RefusedError(
            Check.PAYLOAD_TYPE, f"payloadType is {parsed.payload_type!r}, not {IN_TOTO_PAYLOAD_TYPE!r}"
        )
    key = signing_key(parsed, policy.trusted_keys)
    if key is None:
        raise _RefusedError(Check.SIGNATURE, "no signature verifies with any of the trusted keys")
    return key, parsed.payload


def verify_attestation(
    envelope: bytes,
    artifacts: Sequence[Path],
    policy: VerificationPolicy,
    hash_file: Callable[[Path], str],
) -> Verification:
    """Run the checks in order on an envelope's bytes; artifacts are hashed only once it is trusted."""
    hashed: dict[str, str] = {}
    key: TrustedKey | None = None
    statement_sha256: str | None = None
    try:
        key, payload = _trusted_payload(envelope, policy)
        statement_sha256 = hashlib.sha256(payload).hexdigest()
        # Exactly the bytes whose signature was checked are parsed: nothing is decoded twice.
        statement = _parse_statement(payload)
        _check_statement(
            statement,
            statement_sha256=statement_sha256,
            artifacts=artifacts,
            hash_file=hash_file,
            policy=policy,
            hashed=hashed,
        )
    except _RefusedError as refusal:
        return Verification(
            verified=False,
            reason=refusal.reason,
            failed_check=refusal.check,
            key_id=key.keyid if key else None,
            statement_sha256=statement_sha256,
            artifacts=hashed,
        )
    return Verification(
        verified=True,
        reason=f"{len(artifacts)} artifact(s) covered by a passing gate verdict signed by {key.keyid}",
        key_id=key.keyid,
        statement_sha256=statement_sha256,
        artifacts=hashed,
        statement=statement,
    )
