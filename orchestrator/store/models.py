"""The run store's tables (SQLAlchemy 2 typed ORM). Private to the store: records leave it, rows do not.

The schema itself is created by the Alembic migrations in ``migrations/versions``; these classes
must say the same thing (a test compares them with the migrated database).
"""

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DIGEST = 64  # hex sha256
NAME = 200


class Base(DeclarativeBase):
    """Every table of the run store."""


class CandidateRow(Base):
    __tablename__ = "candidates"

    id: Mapped[str] = mapped_column(String(DIGEST), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[str] = mapped_column(String(NAME))
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    stored_path: Mapped[str] = mapped_column(Text)
    bundle_sha256: Mapped[str] = mapped_column(String(DIGEST))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(NAME))


class MatrixRow(Base):
    __tablename__ = "matrices"

    id: Mapped[str] = mapped_column(String(DIGEST), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(NAME))


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str | None] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    submitted_by: Mapped[str | None] = mapped_column(String(NAME))
    candidate_id: Mapped[str | None] = mapped_column(ForeignKey("candidates.id"), index=True)
    matrix_id: Mapped[str | None] = mapped_column(ForeignKey("matrices.id"), index=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    evidence_dir: Mapped[str] = mapped_column(Text)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class CellRow(Base):
    __tablename__ = "cells"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    cell_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # the plan's order
    state: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    crash_title: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str | None] = mapped_column(String(NAME))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    timings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    observed: Mapped[str | None] = mapped_column(String(32))  # what the guest did, before blame
    expected_outcome: Mapped[str | None] = mapped_column(String(32))  # a control image's declared one


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("run_id", "sequence", name="uq_events_run_sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    cell_id: Mapped[str | None] = mapped_column(String(NAME))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(DIGEST))
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float)
