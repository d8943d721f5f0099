"""Records of what happened: every state change is a ``RunEvent`` that can be persisted and streamed;
results are what a run leaves behind. Plain data with ``as_dict`` for JSON."""

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.core.grouping import groups_as_dicts
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict, as_declared


class RunEventKind(StrEnum):
    """What a run event reports."""

    RUN_STARTED = "run_started"  # the plan was validated and the run began
    CELL_CHANGED = "cell_changed"  # a cell moved to another state
    CELL_NOTE = "cell_note"  # something worth showing happened inside a state (e.g. an unexpected reset)
    CELL_FINISHED = "cell_finished"  # a cell's final result (after any retries), in ``data``
    RUN_FINISHED = "run_finished"  # every cell is done; the verdict is known


@dataclass(frozen=True)
class RunEvent:
    """One entry of a run's event stream, numbered in the order it happened."""

    run_id: str
    sequence: int
    at: float  # seconds since the epoch
    kind: RunEventKind
    cell_id: str | None = None
    state: CellState | None = None
    previous_state: CellState | None = None
    phase: str = ""
    cause: str = ""  # the cell event that caused the change
    outcome: CellOutcome | None = None
    verdict: RunVerdict | None = None
    detail: str = ""
    host: str | None = None
    attempt: int = 1
    data: dict[str, Any] | None = None  # CELL_FINISHED: the cell's result; RUN_FINISHED: the run's summary

    def as_dict(self) -> dict[str, Any]:
        return {
            key: (str(value) if isinstance(value, StrEnum) else value) for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunEvent":
        """The inverse of ``as_dict`` (for stores and clients reading events back)."""
        return cls(
            run_id=data["run_id"],
            sequence=int(data["sequence"]),
            at=float(data["at"]),
            kind=RunEventKind(data["kind"]),
            cell_id=data.get("cell_id"),
            state=CellState(data["state"]) if data.get("state") else None,
            previous_state=CellState(data["previous_state"]) if data.get("previous_state") else None,
            phase=data.get("phase", ""),
            cause=data.get("cause", ""),
            outcome=CellOutcome(data["outcome"]) if data.get("outcome") else None,
            verdict=RunVerdict(data["verdict"]) if data.get("verdict") else None,
            detail=data.get("detail", ""),
            host=data.get("host"),
            attempt=int(data.get("attempt", 1)),
            data=data.get("data"),
        )


@dataclass(frozen=True)
class PhaseTiming:
    """How long a cell spent in one phase."""

    phase: str
    seconds: float


@dataclass
class CellResult:
    """What one cell leaves behind."""

    cell_id: str
    image: str
    kernel: str
    host: str | None
    outcome: CellOutcome
    reason: str
    crash: dict[str, Any] | None = None
    image_digest: str | None = None
    content_digests: dict[str, str] = field(default_factory=dict)  # content file -> sha256 this cell got
    timings: list[PhaseTiming] = field(default_factory=list)
    evidence_dir: str | None = None
    warnings: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 1
    observed: CellOutcome | None = None  # what the guest did, before blame (a baseline crash: crashed)
    control_of: str | None = None  # this result is the control twin (no candidate) of that cell
    expected_outcome: CellOutcome | None = None  # a control image's declared outcome
    retryable: bool = False  # an infrastructure error that another attempt on a fresh clone may clear
    seconds_after_install: float | None = None  # when it ended, counted from the candidate's install
    earlier_attempts: list[dict[str, Any]] = field(default_factory=list)  # outcome, reason, evidence

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("outcome", "observed", "expected_outcome"):
            if data[key] is not None:
                data[key] = str(data[key])
        return data

    @property
    def as_expected(self) -> bool:
        """A control image that did what it is there to do (it then counts as a pass)."""
        return as_declared(self.observed, self.expected_outcome)

    @property
    def verdict_outcome(self) -> CellOutcome:
        """The outcome the run's verdict counts: a control image doing as expected passed."""
        return CellOutcome.PASSED if self.as_expected else self.outcome

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellResult":
        """The inverse of ``as_dict`` (a CELL_FINISHED event's data, read back from a store)."""
        return cls(
            cell_id=data["cell_id"],
            image=data["image"],
            kernel=data["kernel"],
            host=data.get("host"),
            outcome=CellOutcome(data["outcome"]),
            reason=data.get("reason", ""),
            crash=data.get("crash"),
            image_digest=data.get("image_digest"),
            content_digests=dict(data.get("content_digests") or {}),
            timings=[PhaseTiming(t["phase"], float(t["seconds"])) for t in data.get("timings", [])],
            evidence_dir=data.get("evidence_dir"),
            warnings=list(data.get("warnings", [])),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            attempt=int(data.get("attempt", 1)),
            observed=CellOutcome(data["observed"]) if data.get("observed") else None,
            control_of=data.get("control_of"),
            expected_outcome=CellOutcome(data["expected_outcome"]) if data.get("expected_outcome") else None,
            retryable=bool(data.get("retryable", False)),
            seconds_after_install=data.get("seconds_after_install"),
            earlier_attempts=list(data.get("earlier_attempts", [])),
        )

    @property
    def crash_title(self) -> str | None:
        return None if self.crash is None else str(self.crash.get("title"))

    @property
    def seconds(self) -> float:
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at


@dataclass
class RunResult:
    """What a run leaves behind: the verdict, bound to the candidate's digests."""

    run_id: str
    matrix_name: str
    candidate_name: str
    candidate_version: str
    artifact_digests: dict[str, str]
    verdict: RunVerdict
    summary: str
    cells: list[CellResult]
    evidence_dir: str
    started_at: float
    finished_at: float
    matrix_sha256: str = ""
    matrix_source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "matrix": self.matrix_name,
            "matrix_sha256": self.matrix_sha256,
            "matrix_source": self.matrix_source,
            "candidate": {
                "name": self.candidate_name,
                "version": self.candidate_version,
                "artifacts": self.artifact_digests,
            },
            "verdict": str(self.verdict),
            "summary": self.summary,
            "evidence_dir": self.evidence_dir,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cells": [cell.as_dict() for cell in self.cells],
            "groups": groups_as_dicts(self.cells),  # identical failures across cells, biggest first
        }
