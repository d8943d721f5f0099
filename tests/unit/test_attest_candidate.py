"""Signed candidates: the 2024 case (a content file zero-filled after signing) is refused before
any VM starts, naming the artifact; the same bytes signed after the damage pass this check (and
then the gate fails them on the crash: the real-VM test covers that part)."""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.attest import (
    SIGNATURE_NAME,
    TrustedKey,
    sign_candidate,
    verify_signed_candidate,
)
from orchestrator.attest.dsse import envelope_bytes, sign_envelope
from orchestrator.attest.keys import sslib_key
from orchestrator.attest.sslib import CryptoSigner, Signer
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _make_content() -> ModuleType:
    name = "_testbed_sensor_make_content"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "samples" / "linux-sensor" / "make_content.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def new_key() -> tuple[Signer, TrustedKey]:
    private = ec.generate_private_key(ec.SECP256R1())
    return CryptoSigner(private, sslib_key(private.public_key())), TrustedKey(
        sslib_key(private.public_key()), "mem"
    )


RELEASE_SIGNER, RELEASE_KEY = new_key()


def write_manifest(directory: Path) -> None:
    """candidate.yaml pinning the files as they are now."""
    package = directory / "testbed-sensor-1.0.0-linux-x86_64.tar.gz"
    content = directory / "content" / "channel-291.bin"
    lines = [
        "name: testbed-sensor",
        "version: 1.0.0",
        "artifacts:",
        "  - name: sensor-linux",
        "    kind: sensor_package",
        "    os_family: linux",
        f"    path: {package.name}",
        f"    sha256: {hashlib.sha256(package.read_bytes()).hexdigest()}",
        "  - name: channel-291",
        "    kind: content",
        "    path: content/channel-291.bin",
        f"    sha256: {hashlib.sha256(content.read_bytes()).hexdigest()}",
    ]
    (directory / "candidate.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    directory = tmp_path / "good"
    (directory / "content").mkdir(parents=True)
    (directory / "testbed-sensor-1.0.0-linux-x86_64.tar.gz").write_bytes(b"\x1f\x8b stand-in package")
    (directory / "content" / "channel-291.bin").write_bytes(_make_content().build_valid_content())
    write_manifest(directory)
    return directory


def zero_fill(directory: Path) -> None:
    content = directory / "content" / "channel-291.bin"
    content.write_bytes(bytes(len(content.read_bytes())))


def test_signed_candidate_verifies(candidate: Path) -> None:
    signature = sign_candidate(candidate, RELEASE_SIGNER)
    assert signature == candidate / SIGNATURE_NAME
    loaded = verify_signed_candidate(candidate, [RELEASE_KEY])
    assert loaded.name == "testbed-sensor"
    assert [a.name for a in loaded.manifest.artifacts] == ["sensor-linux", "channel-291"]


def test_content_zero_filled_after_signing_is_refused_naming_the_artifact(candidate: Path) -> None:
    sign_candidate(candidate, RELEASE_SIGNER)
    zero_fill(candidate)
    with pytest.raises(ConfigurationError) as raised:
        verify_signed_candidate(candidate, [RELEASE_KEY])
    message = str(raised.value)
    assert "artifact channel-291 (content/channel-291.bin)" in message
    assert "the file changed after it was signed" in message


def test_content_zero_filled_before_signing_passes_the_signature_check(candidate: Path) -> None:
    """Signing proves who shipped the bytes, not that they are good: the gate has to catch this."""
    zero_fill(candidate)
    write_manifest(candidate)
    sign_candidate(candidate, RELEASE_SIGNER)
    loaded = verify_signed_candidate(candidate, [RELEASE_KEY])
    zero_filled = bytes(len(_make_content().build_valid_content()))
    assert loaded.content_files()[0].sha256 == hashlib.sha256(zero_filled).hexdigest()


def test_unsigned_candidate_is_refused(candidate: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"unsigned \(candidate\.yaml\.dsse not found\)"):
        verify_signed_candidate(candidate, [RELEASE_KEY])


def test_candidate_signed_by_an_untrusted_key_is_refused(candidate: Path) -> None:
    stranger, _ = new_key()
    sign_candidate(candidate, stranger)
    with pytest.raises(ConfigurationError, match="is not signed by a trusted release key"):
        verify_signed_candidate(candidate, [RELEASE_KEY])


def test_keyid_spoofing_on_a_candidate_is_refused(candidate: Path) -> None:
    stranger, _ = new_key()
    signature = sign_candidate(candidate, stranger)
    envelope = json.loads(signature.read_bytes())
    envelope["signatures"][0]["keyid"] = RELEASE_KEY.keyid
    signature.write_text(json.dumps(envelope))
    with pytest.raises(ConfigurationError, match="is not signed by a trusted release key"):
        verify_signed_candidate(candidate, [RELEASE_KEY])


def test_manifest_edited_after_signing_is_refused(candidate: Path) -> None:
    sign_candidate(candidate, RELEASE_SIGNER)
    manifest = candidate / "candidate.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: 1.0.1"))
    with pytest.raises(ConfigurationError, match="the manifest changed after it was signed"):
        verify_signed_candidate(candidate, [RELEASE_KEY])


def test_signature_of_another_payload_type_is_refused(candidate: Path) -> None:
    manifest = (candidate / "candidate.yaml").read_bytes()
    envelope = sign_envelope(manifest, "application/vnd.in-toto+json", RELEASE_SIGNER)
    (candidate / SIGNATURE_NAME).write_bytes(envelope_bytes(envelope))
    with pytest.raises(ConfigurationError, match=r"payloadType 'application/vnd\.in-toto\+json'"):
        verify_signed_candidate(candidate, [RELEASE_KEY])


def test_garbage_signature_file_is_refused(candidate: Path) -> None:
    (candidate / SIGNATURE_NAME).write_text("not json")
    with pytest.raises(ConfigurationError, match="not a DSSE envelope"):
        verify_signed_candidate(candidate, [RELEASE_KEY])


def test_a_candidate_whose_files_do_not_match_their_pins_is_not_signed(candidate: Path) -> None:
    zero_fill(candidate)
    with pytest.raises(ConfigurationError, match=r"artifacts\[1\]\.sha256"):
        sign_candidate(candidate, RELEASE_SIGNER)
    assert not (candidate / SIGNATURE_NAME).exists()


def test_no_trusted_keys_is_a_configuration_error(candidate: Path) -> None:
    sign_candidate(candidate, RELEASE_SIGNER)
    with pytest.raises(ConfigurationError, match="no trusted release keys"):
        verify_signed_candidate(candidate, [])
