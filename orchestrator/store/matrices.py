"""Stored matrices: the text as sent (YAML or JSON), validated by the core's parser, by sha256.

The id is the sha256 of the text, so the same text sent twice is one matrix; the text is kept
as it came (comments and all) because that is what the person wrote and will want to read back.
"""

import hashlib
import json
import time

import yaml
from sqlalchemy import func, select

from orchestrator.core.matrix import MatrixSpec, parse_matrix
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.store.database import Database, lost_insert_race
from orchestrator.store.models import MatrixRow
from orchestrator.store.problems import RejectedInputError, problems_from
from orchestrator.store.records import MatrixRecord

LOCATION = "matrix"


def matrix_id_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_matrix_text(text: str) -> MatrixSpec:
    """YAML, or JSON read as JSON (YAML reads most JSON but not all of it, e.g. tab indentation)."""
    try:
        data = json.loads(text)
    except ValueError:
        return parse_matrix(text, source=LOCATION)
    return parse_matrix(yaml.safe_dump(data), source=LOCATION)


class MatrixStore:
    """Adds, lists and finds matrices."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, text: str, *, created_by: str | None = None) -> tuple[MatrixRecord, bool]:
        """Validate and store; the record, and whether it is new. Refused text raises RejectedInputError."""
        try:
            spec = parse_matrix_text(text)
        except ConfigurationError as exc:
            raise RejectedInputError("the matrix was refused", problems_from(exc, LOCATION)) from exc
        matrix_id = matrix_id_of(text)
        try:
            return self._insert_or_get(matrix_id, spec.name, text, created_by)
        except InfrastructureError as exc:
            existing = self.get(matrix_id) if lost_insert_race(exc) else None  # the same text, at once
            if existing is None:
                raise
            return existing, False

    def _insert_or_get(
        self, matrix_id: str, name: str, text: str, created_by: str | None
    ) -> tuple[MatrixRecord, bool]:
        with self._database.session(write=True) as session:
            existing = session.get(MatrixRow, matrix_id)
            if existing is not None:
                return _record(existing), False
            row = MatrixRow(id=matrix_id, name=name, text=text, created_at=time.time(), created_by=created_by)
            session.add(row)
            session.flush()
            return _record(row), True

    def spec_of(self, record: MatrixRecord) -> MatrixSpec:
        """The stored text's spec, defaults filled in (it was valid when stored)."""
        return parse_matrix_text(record.text)

    def get(self, matrix_id: str) -> MatrixRecord | None:
        with self._database.session() as session:
            row = session.get(MatrixRow, matrix_id)
            return None if row is None else _record(row)

    def list_matrices(
        self, *, name: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[MatrixRecord], int]:
        """Newest first; and how many match in all."""
        conditions = [MatrixRow.name == name] if name is not None else []
        with self._database.session() as session:
            total = session.scalar(select(func.count()).select_from(MatrixRow).where(*conditions)) or 0
            rows = session.scalars(
                select(MatrixRow)
                .where(*conditions)
                .order_by(MatrixRow.created_at.desc(), MatrixRow.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [_record(row) for row in rows], total


def _record(row: MatrixRow) -> MatrixRecord:
    return MatrixRecord(
        matrix_id=row.id, name=row.name, text=row.text, created_at=row.created_at, created_by=row.created_by
    )
