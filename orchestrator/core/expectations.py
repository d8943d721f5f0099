"""Known failures a run must show: did each one reproduce, and in which cells?

A catalog names the failures a matrix is there to catch — the incidents of the record, each with
the cells that should catch it and what catching it looks like (an outcome, and a text the crash
title or the reason must contain). Given a finished run's cells with their matrix coordinates, the
check says per entry which cells caught it and how, and which selected cells did something else.
A release manager reads it as "would this matrix have stopped each past incident?".
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.core.errors import ConfigurationError, describe_validation_error
from orchestrator.core.matrix_spec import CellSelector
from orchestrator.core.outcomes import CellOutcome


class ExpectedFailure(BaseModel):
    """One failure the run must show."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    title: str = Field(min_length=1, description="what happened, in one line")
    cells: CellSelector = Field(description="the cells that must catch it; unset fields match anything")
    outcomes: list[CellOutcome] = Field(min_length=1, description="any of these outcomes catches it")
    evidence: str | None = Field(
        None, min_length=1, description="text the crash title or the reason must contain"
    )

    @field_validator("outcomes")
    @classmethod
    def _failures_only(cls, outcomes: list[CellOutcome]) -> list[CellOutcome]:
        if CellOutcome.PASSED in outcomes:
            raise ValueError("an expected failure cannot be caught by a pass")
        return outcomes


class FailureCatalog(BaseModel):
    """A catalog file: the failures a matrix must catch."""

    model_config = ConfigDict(extra="forbid")

    matrix: str | None = Field(None, description="the matrix the catalog is written for")
    failures: list[ExpectedFailure] = Field(min_length=1)

    @field_validator("failures")
    @classmethod
    def _ids_unique(cls, failures: list[ExpectedFailure]) -> list[ExpectedFailure]:
        ids = [failure.id for failure in failures]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"ids listed more than once: {', '.join(repeated)}")
        return failures


def parse_catalog(text: str, source: str = "catalog") -> FailureCatalog:
    """Parse and validate a catalog; every problem is reported with its field path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return FailureCatalog.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: invalid catalog:\n{describe_validation_error(exc)}") from exc


@dataclass(frozen=True)
class ObservedCell:
    """A finished cell of the run, where it sat in the matrix and what it did."""

    cell_id: str
    image: str
    coinstalled: tuple[str, ...]
    sensor_version: str | None
    content_variant: str
    outcome: CellOutcome
    reason: str
    crash_title: str | None = None
    control_of: str | None = None

    @property
    def evidence(self) -> str:
        """What the run says about the cell, as one line: the crash title, else the reason."""
        return self.crash_title or self.reason


@dataclass(frozen=True)
class FailureCheck:
    """One catalog entry against the run."""

    failure: ExpectedFailure
    caught_by: tuple[ObservedCell, ...]  # selected cells whose outcome and evidence match
    missed_by: tuple[ObservedCell, ...]  # selected cells that did something else

    @property
    def reproduced(self) -> bool:
        return bool(self.caught_by)

    def as_dict(self) -> dict[str, Any]:
        def cell(observed: ObservedCell) -> dict[str, Any]:
            return {
                "cell_id": observed.cell_id,
                "outcome": str(observed.outcome),
                "evidence": observed.evidence,
            }

        return {
            "id": self.failure.id,
            "title": self.failure.title,
            "reproduced": self.reproduced,
            "caught_by": [cell(c) for c in self.caught_by],
            "missed_by": [cell(c) for c in self.missed_by],
        }


def _selected(selector: CellSelector, cell: ObservedCell) -> bool:
    checks = (
        (selector.image, cell.image),
        (selector.coinstalled, list(cell.coinstalled)),
        (selector.sensor_version, cell.sensor_version),
        (selector.content_variant, cell.content_variant),
    )
    return all(wanted is None or wanted == actual for wanted, actual in checks)


def _catches(failure: ExpectedFailure, cell: ObservedCell) -> bool:
    if cell.outcome not in failure.outcomes:
        return False
    return failure.evidence is None or failure.evidence in cell.evidence


def check_catalog(catalog: FailureCatalog, cells: Sequence[ObservedCell]) -> list[FailureCheck]:
    """Each catalog entry against the run's cells; control twins (no candidate) never catch one."""
    candidate_cells = [cell for cell in cells if cell.control_of is None]
    checks = []
    for failure in catalog.failures:
        selected = [cell for cell in candidate_cells if _selected(failure.cells, cell)]
        checks.append(
            FailureCheck(
                failure=failure,
                caught_by=tuple(cell for cell in selected if _catches(failure, cell)),
                missed_by=tuple(cell for cell in selected if not _catches(failure, cell)),
            )
        )
    return checks


def observed_cells(result: dict[str, Any], plan: dict[str, Any]) -> list[ObservedCell]:
    """Join a run result's cells (``RunResult.as_dict``) with its plan's coordinates (``RunPlan``)."""
    planned = {cell["cell_id"]: cell for cell in plan.get("cells", [])}
    observed = []
    for cell in result.get("cells", []):
        at = planned.get(cell.get("control_of") or cell["cell_id"])  # a twin sits where its cell sits
        if at is None:
            raise ConfigurationError(f"cell {cell['cell_id']!r} of the result is not in the run's plan")
        crash = cell.get("crash") or {}
        observed.append(
            ObservedCell(
                cell_id=cell["cell_id"],
                image=at["image"]["name"],
                coinstalled=tuple(at.get("coinstalled") or ()),
                sensor_version=at.get("sensor_version"),
                content_variant=at.get("content_variant", "as-shipped"),
                outcome=CellOutcome(cell["outcome"]),
                reason=cell.get("reason", ""),
                crash_title=crash.get("title"),
                control_of=cell.get("control_of"),
            )
        )
    return observed
