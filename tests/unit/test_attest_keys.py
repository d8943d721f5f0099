"""Key files: what is accepted, and errors that name the file for everything else."""

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from orchestrator.attest import (
    create_key_pair,
    load_signer,
    load_trusted_key,
    password_from_env,
    read_revocation_list,
)
from orchestrator.attest.dsse import pae
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit


def test_created_pair_signs_and_the_public_key_checks_it(tmp_path: Path) -> None:
    pair = create_key_pair(tmp_path, b"pw")
    signer = load_signer(pair.private_key, b"pw")
    trusted = load_trusted_key(pair.public_key)
    assert signer.public_key.keyid == trusted.keyid == pair.keyid
    signature = signer.sign(pae("text/plain", b"hello"))
    trusted.key.verify_signature(signature, pae("text/plain", b"hello"))  # raises if it does not verify


def _pem_private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_pem_private(ec.generate_private_key(ec.SECP256R1()), None), "must be an encrypted PKCS#8 PEM key"),
        (_pem_private(ec.generate_private_key(ec.SECP256R1()), b"other"), "cannot decrypt or parse it"),
        (_pem_private(ec.generate_private_key(ec.SECP384R1()), b"pw"), "must be an ECDSA P-256 key"),
        (b"-----BEGIN NOTHING-----\n", "cannot decrypt or parse it"),
    ],
)
def test_unusable_signing_keys_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "release.key"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=re.escape(f"signing key {path}: {message}")):
        load_signer(path, b"pw")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            "must be an ECDSA P-256 key",
        ),
        (b"ssh-ed25519 AAAA...", "not a PEM public key"),
    ],
)
def test_unusable_public_keys_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "release.pub"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=re.escape(f"public key {path}: {message}")):
        load_trusted_key(path)


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"public key .*missing\.pub: cannot read"):
        load_trusted_key(tmp_path / "missing.pub")


def test_password_comes_from_the_named_variable() -> None:
    assert password_from_env("RELEASE_PW", {"RELEASE_PW": "s3cret"}) == b"s3cret"
    with pytest.raises(ConfigurationError, match="RELEASE_PW is not set"):
        password_from_env("RELEASE_PW", {"RELEASE_PW": ""})


def test_revocation_list_reads_digests_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "revoked.txt"
    path.write_text(f"# revoked verdicts\n\nsha256:{'AB' * 32}  # run 1234\n{'cd' * 32}\n")
    assert read_revocation_list(path) == frozenset({"ab" * 32, "cd" * 32})
    path.write_text("ab\n")
    with pytest.raises(ConfigurationError, match=r"revoked\.txt:1: 'ab' is not a sha256 digest"):
        read_revocation_list(path)
