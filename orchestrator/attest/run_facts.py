"""What an attestation needs from a finished run's ``run.json``, read defensively.

Required fields (a run.json without them cannot be attested; the error names the field):
``run_id``, ``verdict`` (passed|failed|inconclusive), ``candidate.name``, ``candidate.version``,
``candidate.artifacts`` (artifact name -> 64 lowercase hex sha256, at least one), ``cells`` (each
with ``cell_id`` and ``outcome``) and ``finished_at`` (seconds since the epoch).

Optional fields, used when present: ``status`` (must be ``finished`` if there), ``matrix`` (a name,
or an object with ``name``, ``sha256`` and ``source``), ``evidence_dir``, per cell ``image``,
``kernel``, ``warnings`` and ``image_digest``; image digests are also taken from ``plan.cells[].image``
and from an ``images`` object (name -> digest or name -> {digest}).
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, RunVerdict
from orchestrator.errors import ConfigurationError

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CellFacts:
    """One cell as the statements describe it."""

    cell_id: str
    image: str
    kernel: str
    outcome: str  # kept as written: an outcome this code does not know is still reported
    warned: bool  # passed, but the cell recorded warnings
    image_digest: str | None


@dataclass(frozen=True)
class RunFacts:
    """A finished run, reduced to what the statements say about it."""

    run_id: str
    matrix_name: str
    candidate_name: str
    candidate_version: str
    artifacts: dict[str, str]  # artifact name -> sha256
    verdict: RunVerdict
    cells: tuple[CellFacts, ...]
    finished_at: float
    evidence_dir: str | None = None
    matrix_sha256: str | None = None  # recorded by newer runs; else the caller supplies it
    matrix_source: str | None = None

    def image_digests(self) -> dict[str, str]:
        """Every image the cells ran on whose digest is known, by name."""
        return {cell.image: cell.image_digest for cell in self.cells if cell.image_digest}


def _field(data: Mapping[str, Any], key: str, where: str, source: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise ConfigurationError(f"{source}: field {where}{key} is missing")
    return data[key]


def _text(data: Mapping[str, Any], key: str, where: str, source: str) -> str:
    value = _field(data, key, where, source)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{source}: field {where}{key} must be a non-empty string")
    return value


def _artifacts(candidate: Mapping[str, Any], source: str) -> dict[str, str]:
    artifacts = _field(candidate, "artifacts", "candidate.", source)
    if not isinstance(artifacts, Mapping) or not artifacts:
        raise ConfigurationError(f"{source}: field candidate.artifacts must map artifact names to sha256")
    for name, digest in artifacts.items():
        if not isinstance(digest, str) or not SHA256_HEX.match(digest):
            raise ConfigurationError(
                f"{source}: field candidate.artifacts.{name} must be 64 lowercase hex digits (sha256)"
            )
    return {str(name): str(digest) for name, digest in artifacts.items()}


def _known_image_digests(data: Mapping[str, Any]) -> dict[str, str]:
    """Image digests from the places run.json may record them (the plan, an images object)."""
    found: dict[str, str] = {}
    plan = data.get("plan")
    plan_cells = plan.get("cells") if isinstance(plan, Mapping) else None
    for planned in plan_cells if isinstance(plan_cells, list) else []:
        image = planned.get("image") if isinstance(planned, Mapping) else None
        if isinstance(image, Mapping) and isinstance(image.get("name"), str):
            digest = image.get("digest")
            if isinstance(digest, str) and SHA256_HEX.match(digest):
                found[image["name"]] = digest
    images = data.get("images")
    for name, value in images.items() if isinstance(images, Mapping) else []:
        digest = value.get("digest") if isinstance(value, Mapping) else value
        if isinstance(digest, str) and SHA256_HEX.match(digest):
            found[str(name)] = digest
    return found


def _cells(data: Mapping[str, Any], source: str) -> tuple[CellFacts, ...]:
    cells = _field(data, "cells", "", source)
    if not isinstance(cells, list):
        raise ConfigurationError(f"{source}: field cells must be a list")
    known = _known_image_digests(data)
    facts = []
    for index, cell in enumerate(cells):
        where = f"cells[{index}]."
        cell_id = _text(cell, "cell_id", where, source)
        outcome = _text(cell, "outcome", where, source)
        image = cell.get("image") if isinstance(cell.get("image"), str) else cell_id
        digest = cell.get("image_digest")
        if not (isinstance(digest, str) and SHA256_HEX.match(digest)):
            digest = known.get(image)
        facts.append(
            CellFacts(
                cell_id=cell_id,
                image=image,
                kernel=str(cell.get("kernel") or ""),
                outcome=outcome,
                warned=bool(cell.get("warnings")),
                image_digest=digest,
            )
        )
    return tuple(facts)


def _check_consistent(verdict: RunVerdict, cells: tuple[CellFacts, ...], source: str) -> None:
    """A verdict that its own cells contradict is never signed: never "passed" without evidence."""
    if verdict is RunVerdict.PASSED:
        if not cells:
            raise ConfigurationError(f"{source}: verdict passed, but the run has no cells")
        for cell in cells:
            if cell.outcome != CellOutcome.PASSED:
                raise ConfigurationError(
                    f"{source}: verdict passed, but cell {cell.cell_id} ended {cell.outcome}"
                )
    if verdict is RunVerdict.FAILED and not any(cell.outcome in CANDIDATE_FAILURES for cell in cells):
        raise ConfigurationError(f"{source}: verdict failed, but no cell failed because of the candidate")


def run_facts(data: Any, source: str = "run.json") -> RunFacts:
    """Read a finished run's run.json (already parsed); errors name the offending field."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: not a JSON object")
    status = data.get("status")
    if status is not None and status != "finished":
        raise ConfigurationError(f"{source}: the run is not finished (status {status!r})")
    try:
        verdict = RunVerdict(_text(data, "verdict", "", source))
    except ValueError as exc:
        raise ConfigurationError(
            f"{source}: field verdict must be one of {', '.join(RunVerdict)}, not {data['verdict']!r}"
        ) from exc
    candidate = _field(data, "candidate", "", source)
    finished_at = _field(data, "finished_at", "", source)
    if (
        isinstance(finished_at, bool)
        or not isinstance(finished_at, int | float)
        or not math.isfinite(finished_at)
    ):
        raise ConfigurationError(f"{source}: field finished_at must be seconds since the epoch")
    cells = _cells(data, source)
    _check_consistent(verdict, cells, source)
    matrix = data.get("matrix")
    matrix_info = matrix if isinstance(matrix, Mapping) else {"name": matrix}
    matrix_sha256 = matrix_info.get("sha256") or data.get("matrix_sha256")
    matrix_source = matrix_info.get("source") or data.get("matrix_source")
    return RunFacts(
        run_id=_text(data, "run_id", "", source),
        matrix_name=str(matrix_info.get("name") or ""),
        candidate_name=_text(candidate, "name", "candidate.", source),
        candidate_version=_text(candidate, "version", "candidate.", source),
        artifacts=_artifacts(candidate, source),
        verdict=verdict,
        cells=cells,
        finished_at=float(finished_at),
        evidence_dir=data.get("evidence_dir") if isinstance(data.get("evidence_dir"), str) else None,
        matrix_sha256=matrix_sha256
        if isinstance(matrix_sha256, str) and SHA256_HEX.match(matrix_sha256)
        else None,
        matrix_source=matrix_source if isinstance(matrix_source, str) and matrix_source else None,
    )
