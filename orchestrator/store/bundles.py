"""Candidate bundles (tar.gz: candidate.yaml + packages + content), checked before a byte is unpacked.

Every member is checked first, and the whole bundle is refused when any is wrong: an absolute
path, a ``..`` component, a link (symbolic or hard), a device or FIFO, a name used twice, more
members than allowed, more bytes once unpacked than allowed. The message names the member.
Only then are the regular files written, by us (never ``extractall``), under a fresh directory.
"""

import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.candidate import MANIFEST_NAME
from orchestrator.store.problems import RejectedInputError
from orchestrator.store.records import FieldProblem

LOCATION = "bundle"


@dataclass(frozen=True)
class BundleLimits:
    """How big a bundle may be, unpacked."""

    max_members: int = 1000
    max_unpacked_bytes: int = 2 << 30


def normalized_name(name: str) -> str:
    """The member's path as it would land: ``./a//b/`` is ``a/b``."""
    return str(PurePosixPath(*[part for part in PurePosixPath(name).parts if part not in (".", "")]))


def _bad_name(member: tarfile.TarInfo) -> bool:
    return not member.name or any(ord(character) < 0x20 for character in member.name)


def _absolute(member: tarfile.TarInfo) -> bool:
    name = member.name
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")


def _climbs(member: tarfile.TarInfo) -> bool:
    return ".." in PurePosixPath(member.name.replace("\\", "/")).parts


_MEMBER_RULES: tuple[tuple[Callable[[tarfile.TarInfo], bool], Callable[[tarfile.TarInfo], str]], ...] = (
    (_bad_name, lambda _: "the name is empty or holds control characters"),
    (_absolute, lambda _: "absolute paths are not allowed"),
    (_climbs, lambda _: "'..' would leave the bundle"),
    (lambda m: m.issym() or m.islnk(), lambda m: f"links are not allowed (it points to {m.linkname!r})"),
    (lambda m: m.ischr() or m.isblk() or m.isfifo(), lambda _: "devices and FIFOs are not allowed"),
    (lambda m: not (m.isfile() or m.isdir()), lambda _: "only regular files and directories are allowed"),
)
"""Checked in order; the first that applies names the problem."""


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why this member may not be unpacked, or None."""
    for applies, message in _MEMBER_RULES:
        if applies(member):
            return message(member)
    return None


def check_members(members: Iterable[tarfile.TarInfo], limits: BundleLimits) -> list[FieldProblem]:
    """Every problem of the bundle's members (pure: the members are read already)."""
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    unpacked = 0
    for count, member in enumerate(members, start=1):
        if count > limits.max_members:
            problems.append(FieldProblem(LOCATION, "", f"more than {limits.max_members} members"))
            break
        problem = member_problem(member)
        if problem is not None:
            problems.append(FieldProblem(LOCATION, member.name, problem))
            continue
        name = normalized_name(member.name)
        if name == ".":
            continue  # the archive's own root directory
        if name in seen:
            problems.append(FieldProblem(LOCATION, member.name, f"{name!r} appears more than once"))
        seen.add(name)
        unpacked += member.size if member.isfile() else 0
        if unpacked > limits.max_unpacked_bytes:
            problems.append(
                FieldProblem(
                    LOCATION,
                    member.name,
                    f"the bundle unpacks to more than {limits.max_unpacked_bytes} bytes",
                )
            )
            break
    return problems


def _members(archive: tarfile.TarFile, limits: BundleLimits) -> Iterator[tarfile.TarInfo]:
    """Read member headers one by one, stopping one past the limit (a bomb of headers is not read)."""
    for _ in range(limits.max_members + 1):
        member = archive.next()
        if member is None:
            return
        yield member


def unpack_bundle(bundle: Path, destination: Path, limits: BundleLimits) -> Path:
    """Check the bundle, then write its files under ``destination`` (which must not exist).

    Returns the directory holding candidate.yaml: the top level, or the bundle's only directory.
    Raises ``RejectedInputError`` naming every offending member; ``destination`` may then hold part of
    the bundle and is the caller's to remove.
    """
    try:
        with tarfile.open(bundle, "r:*") as archive:
            members = list(_members(archive, limits))
            problems = check_members(members, limits)
            if problems:
                raise RejectedInputError("the bundle was refused", problems)
            destination.mkdir()
            for member in members:
                _write_member(archive, member, destination)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise RejectedInputError(
            "the bundle was refused", [FieldProblem(LOCATION, "", f"not a readable tar.gz archive: {exc}")]
        ) from exc
    return _manifest_root(destination)


def _write_member(archive: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    name = normalized_name(member.name)
    if name == ".":
        return
    target = destination / name
    try:
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        source = archive.extractfile(member)
        if source is None:
            raise RejectedInputError(
                "the bundle was refused", [FieldProblem(LOCATION, member.name, "the file cannot be read")]
            )
        with source, target.open("xb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except (FileExistsError, NotADirectoryError) as exc:
        raise RejectedInputError(
            "the bundle was refused",
            [FieldProblem(LOCATION, member.name, "its path collides with another member's")],
        ) from exc


def _manifest_root(destination: Path) -> Path:
    if (destination / MANIFEST_NAME).is_file():
        return destination
    entries = list(destination.iterdir())
    if len(entries) == 1 and (entries[0] / MANIFEST_NAME).is_file():
        return entries[0]
    raise RejectedInputError(
        "the bundle was refused",
        [FieldProblem(LOCATION, MANIFEST_NAME, f"no {MANIFEST_NAME} at the top of the bundle")],
    )
