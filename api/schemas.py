"""What the API sends and accepts (pydantic v2): its OpenAPI schema is these models.

Times are ISO 8601 in UTC; the store's records (seconds since the epoch) are converted here.
"""

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.store import CandidateRecord, FieldProblem, MatrixRecord, Role, TokenRecord

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
    status: Literal["ok", "unavailable"]
    database: str


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
