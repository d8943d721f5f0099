"""Which files of a run's directory are evidence, and finding one by name without leaving it.

A run directory holds evidence (run.json, events.jsonl, attestations/, cells/<cell>/...) beside
things that must never be served: ``work/`` (the run's private SSH key, staged copies) and the
run lock. Only the evidence is listed and served:
- the run's own files: ``run.json``, ``events.jsonl``, and ``attestations/<file>``;
- a cell's files: every regular file under ``cells/<cell>/`` (retries under ``attempt-<n>/``).
A name is a relative path whose parts are plain names (letters, digits, ``._+@~-``, not starting
with a dot): no ``..``, no absolute paths, no hidden files. Symbolic links are never followed.
"""

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

RUN_FILES = ("run.json", "events.jsonl")
ATTESTATIONS = "attestations"
CELLS = "cells"
MAX_DEPTH = 4

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@~-]{0,199}$")

_TYPES = {
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".xml": "application/xml",
    ".png": "image/png",
    ".ppm": "image/x-portable-pixmap",
    ".evtx": "application/octet-stream",
    ".dmp": "application/octet-stream",
}
INLINE_TYPES = frozenset(
    {"text/plain; charset=utf-8", "application/json", "application/x-ndjson", "image/png"}
)


@dataclass(frozen=True)
class EvidenceEntry:
    cell_id: str | None
    name: str
    size: int
    content_type: str


def content_type_of(name: str) -> str:
    return _TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def is_safe_name(name: str) -> bool:
    """A relative path of plain names, at most ``MAX_DEPTH`` deep."""
    parts = name.split("/")
    return 0 < len(parts) <= MAX_DEPTH and all(_PART.match(part) for part in parts)


def _regular(path: Path) -> int | None:
    """The size of a regular file that is not a link; None for anything else (or nothing)."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _walk(directory: Path, prefix: str = "", depth: int = 1) -> Iterator[tuple[str, int]]:
    try:
        children = sorted(directory.iterdir())
    except OSError:
        return
    for child in children:
        name = f"{prefix}{child.name}"
        if not _PART.match(child.name):
            continue
        try:
            mode = child.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            yield name, child.lstat().st_size
        elif stat.S_ISDIR(mode) and depth < MAX_DEPTH:
            yield from _walk(child, f"{name}/", depth + 1)


def cell_files(run_dir: Path, cell_id: str) -> list[EvidenceEntry]:
    if not _PART.match(cell_id):
        return []
    directory = run_dir / CELLS / cell_id
    if _is_link(directory) or _is_link(run_dir / CELLS):
        return []
    return [EvidenceEntry(cell_id, name, size, content_type_of(name)) for name, size in _walk(directory)]


def run_files(run_dir: Path) -> list[EvidenceEntry]:
    entries = []
    for name in RUN_FILES:
        size = _regular(run_dir / name)
        if size is not None:
            entries.append(EvidenceEntry(None, name, size, content_type_of(name)))
    attestations = run_dir / ATTESTATIONS
    if not _is_link(attestations):
        for name, size in _walk(attestations, f"{ATTESTATIONS}/", depth=MAX_DEPTH):
            entries.append(EvidenceEntry(None, name, size, content_type_of(name)))
    return entries


def find_cell_file(run_dir: Path, cell_id: str, name: str) -> Path | None:
    """The cell's evidence file of that name, or None (unsafe name, link, missing, not a file)."""
    if not (_PART.match(cell_id) and is_safe_name(name)):
        return None
    return _inside(run_dir / CELLS / cell_id, name, [run_dir / CELLS])


def find_run_file(run_dir: Path, name: str) -> Path | None:
    """run.json, events.jsonl or attestations/<file>; None for anything else."""
    if name in RUN_FILES:
        return run_dir / name if _regular(run_dir / name) is not None else None
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == ATTESTATIONS and _PART.match(parts[1]):
        return _inside(run_dir / ATTESTATIONS, parts[1], [])
    return None


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(path.lstat().st_mode)
    except OSError:
        return False


def _inside(base: Path, name: str, parents: list[Path]) -> Path | None:
    """``base/name`` if neither it nor any directory on the way (``parents``, ``base``, the
    name's own directories) is a link, and it is a regular file."""
    path = base
    for directory in [*parents, base]:
        if _is_link(directory):
            return None
    for part in name.split("/")[:-1]:
        path = path / part
        if _is_link(path):
            return None
    path = base / name
    return path if _regular(path) is not None else None
