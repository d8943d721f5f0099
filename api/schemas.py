"""What the API sends and accepts (pydantic v2): its OpenAPI schema is these models.

Times are ISO 8601 in UTC; the store's records (seconds since the epoch) are converted here.
"""

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from api.run_views import Coordinates, coordinates_of
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.store import (
    CandidateRecord,
    CellRecord,
    FieldProblem,
    MatrixRecord,
    Role,
    RunRecord,
    RunStatus,
    TokenRecord,
)

Item = TypeVar("Item")

TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$"  # noqa: S105 - a pattern, not a password


def timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


class Problem(BaseModel):
    """One thing wrong with the request, named by where it is and which field."""

    location: str = Field(description="body, query, path, header, bundle, candidate.yaml, matrix, ...")
    field: str = Field(description="dotted path of the field, or the bundle member; empty: the whole input")
    message: str

    @classmethod
    def of(cls, problem: FieldProblem) -> "Problem":
        return cls(location=problem.location, field=problem.field, message=problem.message)


class ErrorBody(BaseModel):
    """Every error the API returns, whatever its status."""

    error: str = Field(
        description="a short code: unauthorized, forbidden, not_found, invalid_input, too_large, ..."
    )
    message: str
    problems: list[Problem] = Field(default_factory=list)


class Page(BaseModel, Generic[Item]):
    """One page of a listing, newest first."""

    items: list[Item]
    total: int = Field(description="how many match in all")
    limit: int
    offset: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"] = Field(description="whether the service and its database answer")
    database: str
    engine: Literal["starting", "ready", "unavailable", "stopped"] = Field(
        description="whether runs can be started (unavailable: its libvirt hosts could not be opened)"
    )
    engine_problem: str = Field("", description="why the engine is unavailable")


class ArtifactOut(BaseModel):
    name: str
    kind: str
    path: str
    sha256: str
    os_family: str | None = None
    sensor_version: str | None = None


class CandidateOut(BaseModel):
    """A stored candidate; its id is the sha256 of its canonical manifest."""

    id: str
    name: str
    version: str
    artifacts: list[ArtifactOut]
    bundle_sha256: str = Field(description="sha256 of the bundle that first brought this candidate")
    created_at: datetime
    created_by: str | None = None

    @classmethod
    def of(cls, record: CandidateRecord) -> "CandidateOut":
        return cls(
            id=record.candidate_id,
            name=record.name,
            version=record.version,
            artifacts=[
                ArtifactOut(
                    name=a.name,
                    kind=a.kind,
                    path=a.path,
                    sha256=a.sha256,
                    os_family=a.os_family,
                    sensor_version=a.sensor_version,
                )
                for a in record.artifacts
            ],
            bundle_sha256=record.bundle_sha256,
            created_at=datetime.fromtimestamp(record.created_at, tz=UTC),
            created_by=record.created_by,
        )


class MatrixSummary(BaseModel):
    id: str = Field(description="sha256 of the text as sent")
    name: str
    created_at: datetime
    created_by: str | None = None

    @classmethod
    def of(cls, record: MatrixRecord) -> "MatrixSummary":
        return cls(
            id=record.matrix_id,
            name=record.name,
            created_at=datetime.fromtimestamp(record.created_at, tz=UTC),
            created_by=record.created_by,
        )


class MatrixOut(MatrixSummary):
    """A stored matrix: the text as sent, and the spec it validates to (defaults filled in)."""

    text: str
    spec: dict[str, Any] | None = Field(description="the validated spec; null if this version refuses it")

    @classmethod
    def with_spec(cls, record: MatrixRecord, spec: dict[str, Any] | None) -> "MatrixOut":
        return cls(**MatrixSummary.of(record).model_dump(), text=record.text, spec=spec)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOKEN_NAME_PATTERN, description="who or what holds it, e.g. ci-release")
    role: Role


class TokenOut(BaseModel):
    """A token as listed: never its secret."""

    id: str
    name: str
    role: Role
    active: bool
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @classmethod
    def of(cls, record: TokenRecord) -> "TokenOut":
        return cls(
            id=record.token_id,
            name=record.name,
            role=record.role,
            active=record.active,
            created_at=datetime.fromtimestamp(record.created_at, tz=UTC),
            revoked_at=timestamp(record.revoked_at),
            last_used_at=timestamp(record.last_used_at),
        )


class TokenCreated(BaseModel):
    """A new token with its secret: shown this once, kept only as a hash."""

    token: TokenOut
    secret: str


# -- runs --------------------------------------------------------------------------------------

DIGEST_PATTERN = r"^[0-9a-f]{64}$"
MAX_PRIORITY = 100


class RunCreate(BaseModel):
    """A run of a stored candidate against a stored matrix (``matrix_id``) or a matrix text."""

    model_config = ConfigDict(extra="forbid")

    candidate_id: str = Field(pattern=DIGEST_PATTERN, description="a stored candidate's id")
    matrix_id: str | None = Field(None, pattern=DIGEST_PATTERN, description="a stored matrix's id")
    matrix: str | None = Field(
        None,
        min_length=1,
        max_length=1 << 20,
        description="the matrix as YAML or JSON text (stored as a matrix first); instead of matrix_id",
    )
    priority: int = Field(
        0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="higher runs get host slots first; FIFO among equals",
    )


class RunCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("canceled through the API", min_length=1, max_length=500)


class PhaseTimingOut(BaseModel):
    phase: str
    seconds: float


class CoordinatesOut(BaseModel):
    """Where a cell sits in the matrix (the status page's grid: rows are images)."""

    image: str
    kernel: str = Field(description="the image's kernel, as the plan knew it ('' if unknown)")
    coinstalled: str = Field(description="products installed before the candidate, '+'-joined; none")
    sensor_version: str
    content_variant: str
    column: str = Field(description="every dimension but the image, in words")

    @classmethod
    def of(cls, coordinates: Coordinates) -> "CoordinatesOut":
        return cls(**coordinates.as_dict(), kernel=coordinates.kernel, column=coordinates.column)


class CellOut(BaseModel):
    """One cell of a run: where it is in its journey, and how it ended."""

    id: str
    coordinates: CoordinatesOut
    state: CellState
    phase: str
    outcome: CellOutcome | None = None
    observed: CellOutcome | None = Field(None, description="what the guest did, before blame")
    expected_outcome: CellOutcome | None = Field(None, description="a control image's declared outcome")
    verdict_outcome: CellOutcome | None = Field(
        None, description="the outcome the verdict counts: passed for a control image doing as declared"
    )
    reason: str = ""
    crash_title: str | None = Field(None, description="the kernel report's title (guest text: untrusted)")
    detail: str = Field("", description="what the latest event said about the cell")
    host: str | None = None
    attempt: int
    timings: list[PhaseTimingOut]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = Field(None, description="how long it ran, once finished")

    @classmethod
    def of(cls, record: CellRecord, coordinates: Coordinates) -> "CellOut":
        seconds = (
            record.finished_at - record.started_at
            if record.finished_at is not None and record.started_at is not None
            else None
        )
        return cls(
            id=record.cell_id,
            coordinates=CoordinatesOut.of(coordinates),
            state=record.state,
            phase=record.phase,
            outcome=record.outcome,
            observed=record.observed,
            expected_outcome=record.expected_outcome,
            verdict_outcome=record.verdict_outcome,
            reason=record.reason,
            crash_title=record.crash_title,
            detail=record.detail,
            host=record.host,
            attempt=record.attempt,
            timings=[PhaseTimingOut(phase=t.phase, seconds=t.seconds) for t in record.timings],
            started_at=timestamp(record.started_at),
            finished_at=timestamp(record.finished_at),
            seconds=seconds,
        )


class RunSummary(BaseModel):
    """A run as listed: status, verdict and how many cells are where."""

    id: str
    status: RunStatus
    verdict: RunVerdict | None = None
    summary: str = ""
    priority: int
    submitted_by: str | None = None
    candidate_id: str | None = None
    candidate_name: str = ""
    candidate_version: str = ""
    matrix_id: str | None = None
    matrix_name: str = ""
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cell_counts: dict[str, int] = Field(description="cells by outcome, or by state until they end")

    @classmethod
    def of(cls, record: RunRecord) -> "RunSummary":
        return cls(**_summary_fields(record))


class RunOut(RunSummary):
    """A run with every cell, and what binds its verdict to the candidate."""

    artifact_digests: dict[str, str] = Field(description="artifact name -> sha256, as the run tested them")
    matrix_sha256: str = ""
    cells: list[CellOut]

    @classmethod
    def of(cls, record: RunRecord) -> "RunOut":
        where = coordinates_of(record.plan, [cell.cell_id for cell in record.cells])
        digests = record.plan.get("artifact_digests")
        return cls(
            **_summary_fields(record),
            artifact_digests={str(k): str(v) for k, v in digests.items()}
            if isinstance(digests, dict)
            else {},
            matrix_sha256=str(record.plan.get("matrix_sha256") or ""),
            cells=[CellOut.of(cell, where[cell.cell_id]) for cell in record.cells],
        )


def _summary_fields(record: RunRecord) -> dict[str, Any]:
    plan = record.plan
    return {
        "id": record.run_id,
        "status": record.status,
        "verdict": record.verdict,
        "summary": record.summary,
        "priority": record.priority,
        "submitted_by": record.submitted_by,
        "candidate_id": record.candidate_id,
        "candidate_name": str(plan.get("candidate_name") or ""),
        "candidate_version": str(plan.get("candidate_version") or ""),
        "matrix_id": record.matrix_id,
        "matrix_name": str(plan.get("matrix_name") or ""),
        "created_at": datetime.fromtimestamp(record.created_at, tz=UTC),
        "started_at": timestamp(record.started_at),
        "finished_at": timestamp(record.finished_at),
        "cell_counts": dict(record.cell_counts),
    }


class EvidenceFile(BaseModel):
    """One file of a run's evidence."""

    cell_id: str | None = Field(description="the cell it belongs to; null for the run's own files")
    name: str = Field(description="its path inside the cell's (or the run's) evidence")
    size: int
    content_type: str
    url: str


class EvidenceListing(BaseModel):
    run_id: str
    files: list[EvidenceFile]
