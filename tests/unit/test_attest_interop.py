"""Interoperability: our envelopes checked by a second, independent DSSE implementation.

cosign and slsa-verifier are not installable from the registries this project may use (neither
is on PyPI nor in Debian's archive), so this file carries its own verifier, written from the DSSE
spec (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md) with ``cryptography``
only: PAE by hand, ECDSA P-256 / SHA-256 over it, DER signatures, standard base64. It shares no
code with orchestrator.attest. It also derives the keyid the Go tools compute for a key given
without an id (go-securesystemslib's SHA256KeyID: the OpenSSH SHA256 fingerprint), since those
tools skip a signature whose non-empty keyid differs from it.
"""

import base64
import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.attest import (
    attest_run,
    create_key_pair,
    load_signer,
    load_trusted_key,
    pae,
    sign_candidate,
    verify_attestation,
)
from orchestrator.attest.policy import VerificationPolicy
from orchestrator.candidate import sha256_of

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "attest"
PASSWORD = b"interop"


# --- the independent verifier ------------------------------------------------------------------


def spec_pae(payload_type: str, payload: bytes) -> bytes:
    """PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, LEN in ASCII decimal."""
    type_bytes = payload_type.encode("utf-8")
    return b" ".join(
        [b"DSSEv1", str(len(type_bytes)).encode(), type_bytes, str(len(payload)).encode(), payload]
    )


def go_keyid(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA256 fingerprint of the SSH wire encoding (RFC 5656), built field by field."""

    def ssh_string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    wire = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp256") + ssh_string(point)
    return "SHA256:" + base64.b64encode(hashlib.sha256(wire).digest()).decode().rstrip("=")


def independent_verify(envelope_file: Path, public_pem: bytes, expected_type: str) -> bytes:
    """Return the payload if one signature verifies under the key; raise otherwise."""
    envelope = json.loads(envelope_file.read_bytes())
    assert envelope["payloadType"] == expected_type
    payload = base64.b64decode(envelope["payload"], validate=True)
    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    message = spec_pae(envelope["payloadType"], payload)
    for signature in envelope["signatures"]:
        try:
            key.verify(base64.b64decode(signature["sig"], validate=True), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return payload
    raise InvalidSignature("no signature verifies")


def independent_sign(statement: dict[str, Any], private_pem: bytes, password: bytes) -> bytes:
    """An envelope as cosign writes it: no keyid, standard base64, signature over PAE."""
    key = serialization.load_pem_private_key(private_pem, password=password)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = json.dumps(statement).encode()
    signature = key.sign(spec_pae("application/vnd.in-toto+json", payload), ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        }
    ).encode()


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture
def attested(tmp_path: Path) -> tuple[Path, Path, Any]:
    pair = create_key_pair(tmp_path / "keys", PASSWORD)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(FIXTURES / "run-passed.json", run_dir / "run.json")
    paths = attest_run(
        run_dir,
        load_signer(pair.private_key, PASSWORD),
        verifier_id="urn:endpoint-testbed:gate",
        matrix_digest="ab" * 32,
        matrix_uri="file:///m.yaml",
    )
    return run_dir, pair.public_key, paths


def test_pae_matches_the_spec_example() -> None:
    expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == expected
    assert spec_pae("http://example.com/HelloWorld", b"hello world") == expected


def test_our_vsa_and_test_result_verify_independently(attested: tuple[Path, Path, Any]) -> None:
    _, public_key, paths = attested
    for envelope, predicate_type in (
        (paths.vsa, "https://slsa.dev/verification_summary/v1"),
        (paths.test_result, "https://in-toto.io/attestation/test-result/v0.1"),
    ):
        statement = json.loads(
            independent_verify(envelope, public_key.read_bytes(), "application/vnd.in-toto+json")
        )
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == predicate_type


def test_the_independent_verifier_rejects_a_tampered_envelope(attested: tuple[Path, Path, Any]) -> None:
    _, public_key, paths = attested
    envelope = json.loads(paths.vsa.read_bytes())
    payload = base64.b64decode(envelope["payload"]).replace(b'"PASSED"', b'"FAILED"')
    envelope["payload"] = base64.b64encode(payload).decode()
    paths.vsa.write_text(json.dumps(envelope))
    with pytest.raises(InvalidSignature):
        independent_verify(paths.vsa, public_key.read_bytes(), "application/vnd.in-toto+json")


def test_keyid_is_the_one_cosign_and_slsa_verifier_derive(attested: tuple[Path, Path, Any]) -> None:
    _, public_key, paths = attested
    key = serialization.load_pem_public_key(public_key.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for envelope in (paths.vsa, paths.test_result):
        assert [s["keyid"] for s in json.loads(envelope.read_bytes())["signatures"]] == [go_keyid(key)]
    assert load_trusted_key(public_key).keyid == go_keyid(key)


def test_input_attestation_digest_is_the_test_result_file(attested: tuple[Path, Path, Any]) -> None:
    _, _, paths = attested
    vsa = json.loads(base64.b64decode(json.loads(paths.vsa.read_bytes())["payload"]))
    (entry,) = vsa["predicate"]["inputAttestations"]
    assert entry["digest"] == {"sha256": sha256_of(paths.test_result)}
    assert entry["uri"] == paths.test_result.resolve().as_uri()


def test_we_verify_an_envelope_made_independently(tmp_path: Path, attested: tuple[Path, Path, Any]) -> None:
    """The other direction: a cosign-style envelope (empty keyid) from the same key verifies here."""
    _, public_key, paths = attested
    statement = json.loads(base64.b64decode(json.loads(paths.vsa.read_bytes())["payload"]))
    private_key = public_key.with_name("testbed-signing.key")
    content = tmp_path / "channel-291.bin"
    content.write_bytes(b"stand-in")
    statement["subject"].append({"name": "stand-in", "digest": {"sha256": sha256_of(content)}})
    envelope = independent_sign(statement, private_key.read_bytes(), PASSWORD)
    policy = VerificationPolicy(
        trusted_keys=(load_trusted_key(public_key),),
        now=datetime(2026, 11, 26, tzinfo=UTC),
    )
    result = verify_attestation(envelope, [content], policy, sha256_of)
    assert result.verified, result.reason


def test_candidate_signature_verifies_independently(tmp_path: Path) -> None:
    pair = create_key_pair(tmp_path / "keys", PASSWORD)
    candidate = tmp_path / "candidate"
    (candidate / "content").mkdir(parents=True)
    (candidate / "content" / "c.bin").write_bytes(b"\x01\x02")
    digest = hashlib.sha256(b"\x01\x02").hexdigest()
    manifest = (
        "name: sample\nversion: 1.0.0\nartifacts:\n"
        f"  - {{name: c, kind: content, path: content/c.bin, sha256: {digest}}}\n"
    )
    (candidate / "candidate.yaml").write_text(manifest)
    signature = sign_candidate(candidate, load_signer(pair.private_key, PASSWORD))
    payload = independent_verify(
        signature, pair.public_key.read_bytes(), "application/vnd.endpoint-testbed.candidate+yaml"
    )
    assert payload == manifest.encode()
