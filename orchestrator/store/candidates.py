"""Stored candidates: content-addressed, verified, immutable, under ``<state_dir>/candidates/<id>/``.

The id is the sha256 of the *canonical manifest* (the validated candidate.yaml as JSON with
sorted keys). The manifest pins every artifact by sha256, so the id names exactly the bytes a
guest will get; the same bundle uploaded twice, or the same candidate packed again with other
timestamps, is the same candidate. The stored directory holds candidate.yaml and the artifacts it
lists, nothing else, read-only.

A bundle is unpacked and verified in a private staging directory; the finished tree appears under
its id with one rename, and the database row follows. A refused bundle leaves nothing behind, and
nothing already stored is ever written again.
"""

import hashlib
import json
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select

from orchestrator.attest.candidate_signature import SIGNATURE_NAME
from orchestrator.candidate import MANIFEST_NAME, Candidate, CandidateManifest, load_candidate, sha256_of
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.store.bundles import BundleLimits, unpack_bundle
from orchestrator.store.database import Database, lost_insert_race
from orchestrator.store.models import CandidateRow
from orchestrator.store.problems import RejectedInputError, problems_from
from orchestrator.store.records import ArtifactRecord, CandidateRecord, FieldProblem

STAGING = ".staging"
INCOMING = ".incoming"


def candidate_id_of(manifest: CandidateManifest) -> str:
    """sha256 of the canonical manifest: what the candidate *is*, whatever the archive looked like."""
    canonical = json.dumps(
        manifest.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class CandidateStore:
    """Adds bundles, lists and finds stored candidates."""

    def __init__(self, database: Database, root: Path, limits: BundleLimits) -> None:
        self._database = database
        self.root = root
        self._limits = limits

    @property
    def incoming_dir(self) -> Path:
        """Where uploads are streamed to before they are checked (same file system as the store)."""
        path = self.root / INCOMING
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sweep_leftovers(self) -> None:
        """Remove half-received uploads and staging trees a killed process left behind."""
        for name in (STAGING, INCOMING):
            if (self.root / name).exists():
                _remove_tree(self.root / name)

    def add_bundle(self, bundle: Path, *, created_by: str | None = None) -> tuple[CandidateRecord, bool]:
        """Verify and store a bundle; the record, and whether it is new (False: it was stored already)."""
        bundle_sha256 = sha256_of(bundle)
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        staging = self.root / STAGING / secrets.token_hex(8)
        staging.mkdir()
        try:
            candidate = _verified(unpack_bundle(bundle, staging / "unpacked", self._limits), staging)
            candidate_id = candidate_id_of(candidate.manifest)
            stored = self.root / candidate_id
            if not stored.is_dir():
                _publish(candidate, staging / "assembled", stored)
            try:
                return self._insert_or_get(candidate, candidate_id, stored, bundle_sha256, created_by)
            except InfrastructureError as exc:
                # Two uploads of one candidate at once: the other one's row is this one's answer.
                existing = self.get(candidate_id) if lost_insert_race(exc) else None
                if existing is None:
                    raise
                return existing, False
        finally:
            _remove_tree(staging)

    def get(self, candidate_id: str) -> CandidateRecord | None:
        with self._database.session() as session:
            row = session.get(CandidateRow, candidate_id)
            return None if row is None else _record(row)

    def list_candidates(
        self, *, name: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[CandidateRecord], int]:
        """Newest first; and how many match in all."""
        conditions = [CandidateRow.name == name] if name is not None else []
        with self._database.session() as session:
            total = session.scalar(select(func.count()).select_from(CandidateRow).where(*conditions)) or 0
            rows = session.scalars(
                select(CandidateRow)
                .where(*conditions)
                .order_by(CandidateRow.created_at.desc(), CandidateRow.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [_record(row) for row in rows], total

    def _insert_or_get(
        self,
        candidate: Candidate,
        candidate_id: str,
        stored: Path,
        bundle_sha256: str,
        created_by: str | None,
    ) -> tuple[CandidateRecord, bool]:
        with self._database.session(write=True) as session:
            existing = session.get(CandidateRow, candidate_id)
            if existing is not None:
                return _record(existing), False
            row = CandidateRow(
                id=candidate_id,
                name=candidate.name,
                version=candidate.version,
                artifacts=[
                    artifact.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for artifact in candidate.manifest.artifacts
                ],
                stored_path=str(stored),
                bundle_sha256=bundle_sha256,
                created_at=time.time(),
                created_by=created_by,
            )
            session.add(row)
            session.flush()
            return _record(row), True


def _strings(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a JSON-like value, with its dotted path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}" if path else str(index))


def _without_server_paths(message: str, root: Path, staging: Path) -> str:
    for directory in (root.resolve(), root):
        message = message.replace(f"{directory}/", "")
    for directory in (staging.resolve(), staging):
        message = message.replace(str(directory), "<bundle>")
    return message


def _verified(root: Path, staging: Path) -> Candidate:
    """load_candidate's checks, with its problems named by field and no server paths in them.

    NUL characters are refused too: no database stores them in text, and no tool expects them.
    """
    try:
        candidate = load_candidate(root)
    except ConfigurationError as exc:
        problems = [
            FieldProblem(p.location, p.field, _without_server_paths(p.message, root, staging))
            for p in problems_from(exc, MANIFEST_NAME)
        ]
        raise RejectedInputError(f"the bundle's {MANIFEST_NAME} was refused", problems) from exc
    dumped = candidate.manifest.model_dump(mode="json", by_alias=True)
    problems = [
        FieldProblem(MANIFEST_NAME, path, "NUL characters are not allowed")
        for path, text in _strings(dumped)
        if "\x00" in text
    ]
    if problems:
        raise RejectedInputError(f"the bundle's {MANIFEST_NAME} was refused", problems)
    return candidate


def _publish(candidate: Candidate, assembled: Path, stored: Path) -> None:
    """Move the manifest and its artifacts into a read-only tree, then rename it into place."""
    assembled.mkdir()
    files = [candidate.root / MANIFEST_NAME] + [candidate.path_of(a) for a in candidate.manifest.artifacts]
    signature = candidate.root / SIGNATURE_NAME
    if signature.is_file():  # a release key's signature over the manifest: required by some gates
        files.append(signature)
    for source in files:
        target = assembled / source.relative_to(candidate.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        target.chmod(0o444)
    for directory in sorted((p for p in assembled.rglob("*") if p.is_dir()), reverse=True):
        directory.chmod(0o555)
    assembled.chmod(0o555)
    try:
        assembled.rename(stored)
    except OSError as exc:
        # Another upload of the same candidate won the race: its tree is the same by construction.
        if not stored.is_dir():
            raise InfrastructureError(f"candidate store: cannot store {stored}: {exc}") from exc


def _remove_tree(path: Path) -> None:
    """rmtree that also removes the read-only trees this store makes."""
    if not path.exists():
        return
    for directory in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        directory.chmod(directory.stat().st_mode | stat.S_IRWXU)
    shutil.rmtree(path)


def _record(row: CandidateRow) -> CandidateRecord:
    return CandidateRecord(
        candidate_id=row.id,
        name=row.name,
        version=row.version,
        artifacts=tuple(
            ArtifactRecord(
                name=a["name"],
                kind=a["kind"],
                path=a["path"],
                sha256=a["sha256"],
                os_family=a.get("os_family"),
                sensor_version=a.get("sensor_version"),
            )
            for a in row.artifacts
        ),
        stored_path=row.stored_path,
        bundle_sha256=row.bundle_sha256,
        created_at=row.created_at,
        created_by=row.created_by,
    )
