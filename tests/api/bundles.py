"""Candidate bundles written by hand: a good one, and archives that try to escape or smuggle.

Used by the store's unit tests and by the API tests (a bundle is what a QA engineer uploads).
"""

import hashlib
import io
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

PACKAGE = b"sensor package bytes\n" * 8
CONTENT = bytes(range(256)) * 4


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(
    version: str = "7.1.0", package: bytes = PACKAGE, content: bytes = CONTENT, **top: object
) -> bytes:
    data = {
        "name": "sensor",
        "version": version,
        "artifacts": [
            {
                "name": "sensor-linux",
                "kind": "sensor_package",
                "os_family": "linux",
                "path": "pkg/sensor-linux.tar.gz",
                "sha256": digest(package),
            },
            {
                "name": "channel-291",
                "kind": "content",
                "path": "content/C-291.bin",
                "sha256": digest(content),
            },
        ],
        **top,
    }
    return yaml.safe_dump(data, sort_keys=False).encode()


def candidate_files(version: str = "7.1.0", content: bytes = CONTENT) -> dict[str, bytes]:
    """The files of a valid candidate directory."""
    return {
        "candidate.yaml": manifest(version, content=content),
        "pkg/sensor-linux.tar.gz": PACKAGE,
        "content/C-291.bin": content,
    }


@dataclass(frozen=True)
class Member:
    """One archive member: a file with data, or a directory, link, device or FIFO."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


def files(entries: Mapping[str, bytes], prefix: str = "") -> list[Member]:
    return [Member(prefix + name, data) for name, data in entries.items()]


def tar_gz(members: list[Member], mtime: int = 0) -> bytes:
    """A gzipped tar of exactly these members (tarfile refuses nothing when writing)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mtime = mtime
            info.linkname = member.linkname
            info.mode = 0o755 if member.kind == tarfile.DIRTYPE else 0o644
            if member.kind == tarfile.REGTYPE:
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def good_bundle(version: str = "7.1.0", mtime: int = 0) -> bytes:
    return tar_gz(files(candidate_files(version)), mtime=mtime)


def _with(*extra: Member) -> Callable[[], list[Member]]:
    return lambda: [*files(candidate_files()), *extra]


MALICIOUS: dict[str, tuple[Callable[[], list[Member]], str]] = {
    # case: (members, the member the refusal must name)
    "absolute path": (_with(Member("/etc/cron.d/evil", b"x")), "/etc/cron.d/evil"),
    "dot-dot": (_with(Member("pkg/../../outside.txt", b"x")), "pkg/../../outside.txt"),
    "symlink": (_with(Member("content/link", kind=tarfile.SYMTYPE, linkname="/etc/shadow")), "content/link"),
    "hard link": (
        _with(Member("content/hard", kind=tarfile.LNKTYPE, linkname="candidate.yaml")),
        "content/hard",
    ),
    "character device": (_with(Member("dev/tty", kind=tarfile.CHRTYPE)), "dev/tty"),
    "block device": (_with(Member("dev/sda", kind=tarfile.BLKTYPE)), "dev/sda"),
    "fifo": (_with(Member("pipe", kind=tarfile.FIFOTYPE)), "pipe"),
    "duplicate name": (_with(Member("./content/C-291.bin", b"other bytes")), "./content/C-291.bin"),
}
