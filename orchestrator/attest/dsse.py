"""DSSE envelopes (https://github.com/secure-systems-lab/dsse): signing through securesystemslib,
parsing and signature checking of our own.

Checking does not use ``securesystemslib.dsse.Envelope.verify``: that one only tries a key whose
keyid equals the keyid the envelope *claims*. Here every trusted key is tried against every
signature and the claimed keyid is ignored: it is unauthenticated, so it decides nothing.

The keyid we write is the OpenSSH SHA256 fingerprint of the public key, which is what
go-securesystemslib derives for a key given without an id (cosign ``--key``, slsa-verifier): a
signature whose keyid differs from it would be skipped there.
"""

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError

from orchestrator.attest.sslib import Signature, Signer, SSlibKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class MalformedEnvelopeError(ValueError):
    """The bytes are not a DSSE envelope (JSON with payload, payloadType and signatures)."""


@dataclass(frozen=True)
class TrustedKey:
    """A public key the operator configured as trusted, and the file it came from."""

    key: SSlibKey
    source: str

    @property
    def keyid(self) -> str:
        return self.key.keyid


@dataclass(frozen=True)
class EnvelopeSignature:
    sig: bytes
    claimed_keyid: str  # as written in the envelope: a hint, never a reason to trust


@dataclass(frozen=True)
class ParsedEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature actually covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, payload_type: str, signer: Signer) -> dict[str, Any]:
    """A DSSE envelope over ``payload``, as JSON data (base64 payload and signature)."""
    envelope = Envelope(payload=payload, payload_type=payload_type, signatures={})
    envelope.sign(signer)
    data: dict[str, Any] = envelope.to_dict()
    return data


def envelope_bytes(envelope: dict[str, Any]) -> bytes:
    return (json.dumps(envelope, indent=2) + "\n").encode()


def _b64decode(text: Any, field: str) -> bytes:
    """DSSE allows standard or URL-safe base64, padded or not; anything else is malformed."""
    if not isinstance(text, str):
        raise MalformedEnvelopeError(f"{field} is not a base64 string")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedEnvelopeError(f"{field} is not valid base64") from exc


def parse_envelope(raw: bytes) -> ParsedEnvelope:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEnvelopeError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEnvelopeError("not a JSON object")
    payload_type = data.get("payloadType")
    if not isinstance(payload_type, str):
        raise MalformedEnvelopeError("payloadType is missing")
    signatures = data.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise MalformedEnvelopeError("signatures is missing or empty")
    parsed = []
    for index, entry in enumerate(signatures):
        if not isinstance(entry, dict):
            raise MalformedEnvelopeError(f"signatures[{index}] is not an object")
        keyid = entry.get("keyid", "")
        parsed.append(
            EnvelopeSignature(
                sig=_b64decode(entry.get("sig"), f"signatures[{index}].sig"),
                claimed_keyid=keyid if isinstance(keyid, str) else "",
            )
        )
    return ParsedEnvelope(
        payload_type=payload_type,
        payload=_b64decode(data.get("payload"), "payload"),
        signatures=tuple(parsed),
    )


def signing_key(envelope: ParsedEnvelope, trusted: Sequence[TrustedKey]) -> TrustedKey | None:
    """The first trusted key that made one of the envelope's signatures, if any."""
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        for candidate in trusted:
            # The claimed keyid is replaced by the trusted key's own: only the bytes decide.
            as_if_from_key = Signature(keyid=candidate.keyid, sig=signature.sig.hex())
            try:
                candidate.key.verify_signature(as_if_from_key, message)
            except (UnverifiedSignatureError, VerificationError):
                continue
            return candidate
    return None
