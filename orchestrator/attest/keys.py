"""Signing keys on disk: ECDSA P-256, the private key as encrypted PKCS#8 PEM, the public key as
PEM SubjectPublicKeyInfo (what ``cosign ... --key`` and ``slsa-verifier --public-key-path`` read).

Third-party errors (bad PEM, wrong password, another key type) become ``ConfigurationError``
naming the file.
"""

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.attest.dsse import TrustedKey
from orchestrator.attest.sslib import CryptoSigner, Signer, SSlibKey
from orchestrator.errors import ConfigurationError

ECDSA_SCHEME = "ecdsa-sha2-nistp256"
PRIVATE_KEY_NAME = "testbed-signing.key"
PUBLIC_KEY_NAME = "testbed-signing.pub"
DEFAULT_PASSWORD_ENV = "TESTBED_KEY_PASSWORD"  # noqa: S105 - a variable name, not a password


@dataclass(frozen=True)
class KeyPair:
    private_key: Path
    public_key: Path
    keyid: str


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The OpenSSH SHA256 fingerprint (``ssh-keygen -l``), which go-securesystemslib also derives."""
    openssh = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    wire = base64.b64decode(openssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(wire).digest()).decode().rstrip("=")


def sslib_key(public_key: ec.EllipticCurvePublicKey) -> SSlibKey:
    return SSlibKey.from_crypto(public_key, keyid=key_id(public_key), scheme=ECDSA_SCHEME)


def password_from_env(variable: str, environ: Mapping[str, str] | None = None) -> bytes:
    """Key passwords come from the environment, never from the command line (shell history, ps)."""
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value:
        raise ConfigurationError(
            f"key password: environment variable {variable} is not set (or empty); "
            "set it, or name another one with --password-env"
        )
    return value.encode()


def create_key_pair(out_dir: Path, password: bytes) -> KeyPair:
    """A new P-256 key pair in ``out_dir``; existing key files are never overwritten."""
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigurationError(f"keys: {path} already exists; refusing to overwrite a key")
    private_key = ec.generate_private_key(ec.SECP256R1())
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two `keys create` racing cannot both write the same file; 0600 from the start.
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise ConfigurationError(f"keys: cannot write to {out_dir}: {exc.strerror}") from exc
    return KeyPair(private_path, public_path, key_id(private_key.public_key()))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: cannot read: {exc.strerror}") from exc


def load_signer(path: Path, password: bytes) -> Signer:
    """The signing key in ``path`` (encrypted PKCS#8 PEM, P-256)."""
    pem = _read(path, "signing key")
    try:
        private_key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # cryptography: a password for an unencrypted key, or none for an encrypted one
        raise ConfigurationError(f"signing key {path}: must be an encrypted PKCS#8 PEM key") from exc
    except ValueError as exc:
        raise ConfigurationError(
            f"signing key {path}: cannot decrypt or parse it (wrong password, or not a PEM private key)"
        ) from exc
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise ConfigurationError(f"signing key {path}: must be an ECDSA P-256 key")
    return CryptoSigner(private_key, sslib_key(private_key.public_key()))


def load_trusted_key(path: Path) -> TrustedKey:
    """A trusted public key (PEM SubjectPublicKeyInfo, P-256)."""
    pem = _read(path, "public key")
    try:
        public_key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigurationError(f"public key {path}: not a PEM public key") from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise ConfigurationError(f"public key {path}: must be an ECDSA P-256 key")
    return TrustedKey(sslib_key(public_key), str(path))
