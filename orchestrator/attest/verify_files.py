"""The file side of verification: read the envelope and the revocation list, stream-hash artifacts.

Anything that cannot be read raises (``OSError`` or ``ConfigurationError`` naming the file): the
caller reports "could not check", which is never "verified".
"""

import re
from collections.abc import Sequence
from pathlib import Path

from orchestrator.attest.policy import Verification, VerificationPolicy, verify_attestation
from orchestrator.candidate import sha256_of
from orchestrator.errors import ConfigurationError

_DIGEST_LINE = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")


def read_revocation_list(path: Path) -> frozenset[str]:
    """One sha256 per line (``sha256:`` prefix optional); ``#`` starts a comment."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"revocation list {path}: cannot read: {exc}") from exc
    entries = set()
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not _DIGEST_LINE.match(entry):
            raise ConfigurationError(
                f"revocation list {path}:{number}: {entry!r} is not a sha256 digest (64 hex digits)"
            )
        entries.add(entry.lower().removeprefix("sha256:"))
    return frozenset(entries)


def verify_files(attestation: Path, artifacts: Sequence[Path], policy: VerificationPolicy) -> Verification:
    """Verify an attestation file for artifact files on disk."""
    envelope = attestation.read_bytes()
    for artifact in artifacts:
        if not artifact.is_file():
            raise ConfigurationError(f"artifact {artifact}: not a file")
    return verify_attestation(envelope, artifacts, policy, sha256_of)
