"""Crash grouping: the same failure on eight cells is one finding on eight cells, not eight lines.

Cells are grouped by (outcome, normalized crash title, module). The crash parser already normalizes
titles (no addresses, offsets or PIDs), so equal titles mean the same bug. A cell without a crash
report is grouped by its outcome and its reason with the numbers and hex taken out ("boot 2 did not
become ready within 300s" and "boot 3 ..." are one hang). Candidate failures and infrastructure
errors are grouped too, never together; passes and cancellations are not failures.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome
from orchestrator.core.sanitize import for_terminal

__all__ = [
    "FailureGroup",
    "GroupableCell",
    "describe",
    "group_failures",
    "groups_as_dicts",
    "normalize_reason",
    "verdict_cells",
]

_GROUPED = CANDIDATE_FAILURES | {CellOutcome.INFRA_ERROR}

# Hex first (0x-prefixed, or 8+ bare hex digits with a digit among them: addresses, digests), then
# decimal numbers (with dots: versions, seconds) that do not sit inside a word ("debian12" and "n1"
# are names, "300s" is a number of seconds).
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|(?<![\w.-])(?=[a-fA-F]*\d)[0-9a-fA-F]{8,}(?![\w-])")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_])\d+(?:\.\d+)*")


class GroupableCell(Protocol):
    """What grouping reads of a cell result (``records.CellResult`` has it)."""

    @property
    def cell_id(self) -> str: ...
    @property
    def outcome(self) -> CellOutcome: ...
    @property
    def reason(self) -> str: ...
    @property
    def crash(self) -> Mapping[str, Any] | None: ...
    @property
    def control_of(self) -> str | None: ...
    @property
    def as_expected(self) -> bool: ...


_Cell = TypeVar("_Cell", bound=GroupableCell)


@dataclass(frozen=True)
class FailureGroup:
    """Cells that failed the same way."""

    outcome: CellOutcome
    title: str  # the normalized crash title, or the normalized reason when there was no crash report
    module: str | None  # the guilty frame's module; None for the core kernel or without a report
    cells: tuple[str, ...]  # cell ids, in the run's order

    def as_dict(self, total: int) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            "title": self.title,
            "module": self.module,
            "count": len(self.cells),
            "cells": list(self.cells),
            "summary": describe(self, total),
        }


def normalize_reason(reason: str) -> str:
    """A reason with what differs between cells of one failure (numbers, addresses) taken out.

    Escape sequences go first: "\\x1b[31m" with its number replaced would no longer be one.
    """
    return " ".join(_NUMBER.sub("N", _HEX.sub("ADDR", for_terminal(reason))).split())


def verdict_cells(cells: Iterable[_Cell]) -> list[_Cell]:
    """The cells the verdict counts: control twins are evidence for another cell, not cells of their own."""
    return [cell for cell in cells if cell.control_of is None]


def group_failures(cells: Sequence[GroupableCell]) -> list[FailureGroup]:
    """Failures grouped: candidate failures before infrastructure errors, then the biggest group first,
    ties by title. Passed, canceled, control images that did as expected and control twins are left out."""
    members: dict[tuple[CellOutcome, str, str | None], list[str]] = {}
    for cell in verdict_cells(cells):
        if cell.outcome not in _GROUPED or cell.as_expected:
            continue
        members.setdefault(_key(cell), []).append(cell.cell_id)
    groups = [
        FailureGroup(outcome, title, module, tuple(ids)) for (outcome, title, module), ids in members.items()
    ]
    return sorted(
        groups,
        key=lambda g: (
            g.outcome not in CANDIDATE_FAILURES,
            -len(g.cells),
            g.title,
            g.outcome,
            g.module or "",
        ),
    )


def _key(cell: GroupableCell) -> tuple[CellOutcome, str, str | None]:
    crash = cell.crash or {}
    title = crash.get("title")
    if title:
        module = crash.get("module")
        return cell.outcome, str(title), str(module) if module else None
    return cell.outcome, normalize_reason(cell.reason) or "(no reason given)", None


def describe(group: FailureGroup, total: int) -> str:
    """One line for people, e.g.
    'crashed on 6 of 8 cells: BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]'.
    """
    title = group.title
    if group.module and f"[{group.module}]" not in title:
        title += f" [{group.module}]"  # the parser puts the module in the title; other sources may not
    noun = "cell" if total == 1 else "cells"
    return f"{group.outcome} on {len(group.cells)} of {total} {noun}: {title}"


def groups_as_dicts(cells: Sequence[GroupableCell]) -> list[dict[str, Any]]:
    """The grouped failures as JSON-ready data (the ``groups`` entry of a run's result)."""
    total = len(verdict_cells(cells))
    return [group.as_dict(total) for group in group_failures(cells)]
