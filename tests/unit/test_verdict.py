"""How the cells' outcomes become the run's answer and the process exit code."""

import pytest

from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, RunVerdict
from orchestrator.core.verdict import EXIT_BAD_INPUT, decide

pytestmark = pytest.mark.unit

P = CellOutcome.PASSED
C = CellOutcome.CRASHED
I = CellOutcome.INFRA_ERROR  # noqa: E741 - one letter per outcome keeps the table readable
X = CellOutcome.CANCELED


@pytest.mark.parametrize(
    ("outcomes", "verdict", "exit_code", "summary"),
    [
        ([], RunVerdict.INCONCLUSIVE, 2, "no cell ran"),
        ([P], RunVerdict.PASSED, 0, "all 1 cell(s) passed"),
        ([P, P, P], RunVerdict.PASSED, 0, "all 3 cell(s) passed"),
        ([P, C], RunVerdict.FAILED, 1, "1 of 2 cell(s) failed: cell-1"),
        ([C, C], RunVerdict.FAILED, 1, "2 of 2 cell(s) failed: cell-0, cell-1"),
        ([I, C], RunVerdict.FAILED, 1, "1 of 2 cell(s) failed: cell-1"),
        ([X, C, P], RunVerdict.FAILED, 1, "1 of 3 cell(s) failed: cell-1"),
        ([I, P], RunVerdict.INCONCLUSIVE, 2, "1 of 2 cell(s) gave no answer: cell-0"),
        ([I], RunVerdict.INCONCLUSIVE, 2, "1 of 1 cell(s) gave no answer: cell-0"),
        ([P, X], RunVerdict.INCONCLUSIVE, 2, "1 of 2 cell(s) gave no answer: cell-1"),
        ([X, X], RunVerdict.INCONCLUSIVE, 2, "2 of 2 cell(s) gave no answer: cell-0, cell-1"),
        ([P, None], RunVerdict.INCONCLUSIVE, 2, "1 of 2 cell(s) gave no answer: cell-1"),
        ([None, C], RunVerdict.FAILED, 1, "1 of 2 cell(s) failed: cell-1"),
    ],
    ids=[
        "empty-run",
        "one-passed",
        "all-passed",
        "one-crash",
        "all-crashed",
        "infra-and-fail",
        "canceled-and-fail",
        "infra-and-pass",
        "only-infra",
        "canceled-and-pass",
        "all-canceled",
        "unfinished-and-pass",
        "unfinished-and-fail",
    ],
)
def test_verdict_table(outcomes, verdict, exit_code, summary):
    decided = decide((f"cell-{index}", outcome) for index, outcome in enumerate(outcomes))
    assert (decided.verdict, decided.exit_code, decided.summary) == (verdict, exit_code, summary)


@pytest.mark.parametrize("failure", sorted(CANDIDATE_FAILURES))
def test_every_candidate_failure_fails_the_run(failure):
    assert decide([("a", CellOutcome.PASSED), ("b", failure)]).verdict is RunVerdict.FAILED


def test_candidate_failures_are_exactly_the_candidates_fault():
    expected = {
        CellOutcome.CRASHED,
        CellOutcome.BOOT_LOOP,
        CellOutcome.HUNG,
        CellOutcome.DEGRADED,
        CellOutcome.INSTALL_FAILED,
    }
    assert expected == CANDIDATE_FAILURES


def test_bad_input_has_its_own_exit_code():
    exit_codes = {decide([("a", outcome)]).exit_code for outcome in CellOutcome}
    assert exit_codes == {0, 1, 2}
    assert EXIT_BAD_INPUT == 3
