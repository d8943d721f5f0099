"""Verdict rules: how the cells' outcomes become the run's answer about the candidate."""

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, RunVerdict

EXIT_CODES = {RunVerdict.PASSED: 0, RunVerdict.FAILED: 1, RunVerdict.INCONCLUSIVE: 2}
"""Process exit codes of ``testbed gate`` / ``testbed submit`` (3 is bad input, before any verdict)."""
EXIT_BAD_INPUT = 3


@dataclass(frozen=True)
class Verdict:
    """The run's answer and the sentence that justifies it."""

    verdict: RunVerdict
    summary: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def decide(outcomes: Iterable[tuple[str, CellOutcome | None]]) -> Verdict:
    """Failed if any cell failed because of the candidate; passed only if every cell passed.

    A cell without an outcome (never finished) or with an infrastructure error or a cancellation
    gives no evidence either way, so it makes the run inconclusive unless a candidate failure
    already decided it. An empty run is inconclusive: no evidence is never a pass.
    """
    outcomes = list(outcomes)
    failed = [cell for cell, outcome in outcomes if outcome in CANDIDATE_FAILURES]
    unanswered = [
        cell for cell, outcome in outcomes if outcome not in CANDIDATE_FAILURES | {CellOutcome.PASSED}
    ]
    if failed:
        return Verdict(
            RunVerdict.FAILED, f"{len(failed)} of {len(outcomes)} cell(s) failed: {', '.join(failed)}"
        )
    if not outcomes:
        return Verdict(RunVerdict.INCONCLUSIVE, "no cell ran")
    if unanswered:
        return Verdict(
            RunVerdict.INCONCLUSIVE,
            f"{len(unanswered)} of {len(outcomes)} cell(s) gave no answer: {', '.join(unanswered)}",
        )
    return Verdict(RunVerdict.PASSED, f"all {len(outcomes)} cell(s) passed")
