"""Signed candidates: a detached DSSE envelope over the exact bytes of ``candidate.yaml``.

``candidate.yaml.dsse`` beside the manifest is signed by a release key. Because the manifest pins
every artifact's sha256, the signature covers the artifacts too: a file changed after signing (the
2024 failure: a content file corrupted after the pipeline had approved it) no longer matches its
signed pin and is refused *before any VM starts*, with a ``ConfigurationError`` (exit 3) naming
the artifact. A file that was already bad when it was signed passes this check; that is what the
gate itself is for.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator.attest.dsse import (
    MalformedEnvelopeError,
    TrustedKey,
    envelope_bytes,
    parse_envelope,
    sign_envelope,
    signing_key,
)
from orchestrator.attest.sslib import Signer
from orchestrator.candidate import MANIFEST_NAME, Candidate, CandidateManifest, load_candidate, sha256_of
from orchestrator.errors import ConfigurationError, describe_validation_error

SIGNATURE_NAME = MANIFEST_NAME + ".dsse"
MANIFEST_PAYLOAD_TYPE = "application/vnd.endpoint-testbed.candidate+yaml"


def _manifest_path(path: Path) -> Path:
    return path / MANIFEST_NAME if path.is_dir() else path


def sign_candidate(path: Path, signer: Signer) -> Path:
    """Sign a candidate's manifest; the candidate must be whole (every file matches its pin) first."""
    manifest_path = _manifest_path(path)
    load_candidate(manifest_path)
    manifest = manifest_path.read_bytes()
    signature_path = manifest_path.with_name(SIGNATURE_NAME)
    signature_path.write_bytes(envelope_bytes(sign_envelope(manifest, MANIFEST_PAYLOAD_TYPE, signer)))
    return signature_path


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{what}: {path} not found") from exc
    except OSError as exc:
        raise ConfigurationError(f"{what}: {path}: {exc.strerror}") from exc


def _signed_manifest(manifest_path: Path, trusted: Sequence[TrustedKey]) -> CandidateManifest:
    """The manifest as signed: exactly the bytes a trusted release key signed, parsed."""
    signature_path = manifest_path.with_name(SIGNATURE_NAME)
    if not signature_path.exists():
        raise ConfigurationError(
            f"candidate {manifest_path}: unsigned ({SIGNATURE_NAME} not found); "
            "a trusted release key must sign it: testbed candidate sign DIR --key KEY"
        )
    try:
        envelope = parse_envelope(_read(signature_path, "candidate signature"))
    except MalformedEnvelopeError as exc:
        raise ConfigurationError(f"candidate signature {signature_path}: not a DSSE envelope: {exc}") from exc
    if envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
        raise ConfigurationError(
            f"candidate signature {signature_path}: payloadType {envelope.payload_type!r} "
            f"is not {MANIFEST_PAYLOAD_TYPE!r}"
        )
    if signing_key(envelope, trusted) is None:
        raise ConfigurationError(
            f"candidate {manifest_path}: {SIGNATURE_NAME} is not signed by a trusted release key"
        )
    if envelope.payload != _read(manifest_path, "candidate"):
        raise ConfigurationError(
            f"candidate {manifest_path}: the manifest changed after it was signed "
            f"(signed sha256 {hashlib.sha256(envelope.payload).hexdigest()})"
        )
    try:
        return CandidateManifest.model_validate(yaml.safe_load(envelope.payload))
    except (yaml.YAMLError, ValidationError) as exc:
        detail = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigurationError(
            f"candidate {manifest_path}: the signed manifest is invalid:\n{detail}"
        ) from exc


def verify_signed_candidate(path: Path, trusted: Sequence[TrustedKey]) -> Candidate:
    """Load a candidate only if a trusted release key signed its manifest and every artifact still
    has the digest that was signed; the error names the artifact that changed."""
    if not trusted:
        raise ConfigurationError("candidate signatures: no trusted release keys are configured")
    manifest_path = _manifest_path(path)
    manifest = _signed_manifest(manifest_path, trusted)
    root = manifest_path.parent.resolve()
    for artifact in manifest.artifacts:
        file = (root / artifact.path).resolve()
        where = f"candidate {manifest_path}: artifact {artifact.name} ({artifact.path})"
        if not file.is_relative_to(root):
            raise ConfigurationError(f"{where}: points outside the candidate directory")
        if not file.is_file():
            raise ConfigurationError(f"{where}: file not found")
        actual = sha256_of(file)
        if actual != artifact.sha256:
            raise ConfigurationError(
                f"{where}: has sha256 {actual}, but the signed manifest pins {artifact.sha256}: "
                "the file changed after it was signed"
            )
    candidate = load_candidate(manifest_path)
    if candidate.manifest != manifest:  # the file was swapped between the two reads
        raise ConfigurationError(f"candidate {manifest_path}: the manifest changed while it was checked")
    return candidate
