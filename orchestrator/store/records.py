"""What the store hands out: plain frozen records (no ORM object ever leaves the store).

Times are seconds since the epoch, as everywhere in the engine (``RunEvent.at``, ``RunResult``).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict, as_declared


class RunStatus(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"  # accepted: its record and plan exist, no cell has started yet
    RUNNING = "running"  # the run started (its first event arrived)
    FINISHED = "finished"  # every cell ended; the verdict is final


class Role(StrEnum):
    """What a token may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"  # read runs, candidates, matrices, evidence, metrics
    SUBMITTER = "submitter"  # also upload candidates, create matrices and runs, cancel runs
    ADMIN = "admin"  # also manage tokens

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: "Role") -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with an input, named by where it is and which field (or archive member)."""

    location: str  # "body", "query", "candidate.yaml", "bundle", "matrix", ...
    field: str  # dotted path of the field, or the archive member's name; "" for the whole input
    message: str


@dataclass(frozen=True)
class PhaseTimingRecord:
    """How long a cell spent in one phase."""

    phase: str
    seconds: float


@dataclass(frozen=True)
class CellRecord:
    """The projection of one cell, kept up to date from the run's events."""

    run_id: str
    cell_id: str
    state: CellState = CellState.PENDING
    phase: str = ""
    outcome: CellOutcome | None = None
    reason: str = ""
    crash_title: str | None = None
    detail: str = ""  # what the last event said about the cell (shown beside its state)
    host: str | None = None
    attempt: int = 1
    timings: tuple[PhaseTimingRecord, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    last_sequence: int = 0  # the newest event applied: older or repeated events change nothing
    observed: CellOutcome | None = None  # what the guest did, before blame
    expected_outcome: CellOutcome | None = None  # a control image's declared outcome

    @property
    def as_expected(self) -> bool:
        """A control image that did what it is there to do: the verdict counts it as a pass."""
        return as_declared(self.observed, self.expected_outcome)

    @property
    def verdict_outcome(self) -> CellOutcome | None:
        """The outcome the run's verdict counts (``CellResult.verdict_outcome``), once ended."""
        return CellOutcome.PASSED if self.as_expected else self.outcome


@dataclass(frozen=True)
class RunRecord:
    """A run as the store knows it: from the moment it is accepted until (and after) its verdict."""

    run_id: str
    status: RunStatus
    plan: Mapping[str, Any]
    evidence_dir: str
    created_at: float
    priority: int = 0
    verdict: RunVerdict | None = None
    summary: str = ""
    submitted_by: str | None = None
    candidate_id: str | None = None
    matrix_id: str | None = None
    result: Mapping[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    last_sequence: int = 0
    cells: tuple[CellRecord, ...] = ()  # filled by ``get_run`` and ``unfinished_runs``, not by listings
    cell_counts: Mapping[str, int] = field(default_factory=dict)  # by outcome, or by state until done


@dataclass(frozen=True)
class ArtifactRecord:
    """One pinned file of a stored candidate."""

    name: str
    kind: str
    path: str
    sha256: str
    os_family: str | None = None
    sensor_version: str | None = None


@dataclass(frozen=True)
class CandidateRecord:
    """A stored, verified, immutable candidate."""

    candidate_id: str  # sha256 of the canonical manifest (see ``orchestrator.store.candidates``)
    name: str
    version: str
    artifacts: tuple[ArtifactRecord, ...]
    stored_path: str
    bundle_sha256: str  # of the bundle that first brought it
    created_at: float
    created_by: str | None = None


@dataclass(frozen=True)
class MatrixRecord:
    """A stored matrix text, validated when it was added."""

    matrix_id: str  # sha256 of the text as sent
    name: str
    text: str
    created_at: float
    created_by: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    """An API token, never with its secret (only a hash of it is kept)."""

    token_id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
