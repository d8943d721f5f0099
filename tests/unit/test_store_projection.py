"""How events move the run and cell records: table-driven, pure, no database."""

from dataclasses import replace

import pytest

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import CellResult, PhaseTiming, RunEvent, RunEventKind, RunResult
from orchestrator.store.projection import (
    apply_to_cell,
    apply_to_run,
    cell_from_result,
    run_from_result,
    timings_from,
)
from orchestrator.store.records import CellRecord, PhaseTimingRecord, RunRecord, RunStatus

pytestmark = pytest.mark.unit

RUN = RunRecord(run_id="r", status=RunStatus.QUEUED, plan={}, evidence_dir="/e", created_at=0.0)
CELL = CellRecord(run_id="r", cell_id="c")


def event(
    sequence: int, kind: RunEventKind = RunEventKind.CELL_CHANGED, at: float = 0.0, **fields
) -> RunEvent:
    return RunEvent(run_id="r", sequence=sequence, at=at or float(sequence), kind=kind, **fields)


FINISHED_DATA = {
    "cell_id": "c",
    "outcome": "crashed",
    "reason": "the guest panicked",
    "crash": {"title": "BUG: kernel NULL pointer dereference"},
    "host": "local",
    "attempt": 1,
    "timings": [{"phase": "boot 1", "seconds": 20.5}, {"phase": "install", "seconds": 3.0}],
    "started_at": 2.0,
    "finished_at": 9.0,
}


BOOTING = replace(CELL, state=CellState.BOOTING, started_at=2.0, last_sequence=3)


def finishing(**data) -> RunEvent:
    """CELL_FINISHED as event 4, carrying ``FINISHED_DATA`` (no crash) with ``data`` over it."""
    return event(
        4,
        RunEventKind.CELL_FINISHED,
        cell_id="c",
        state=CellState.DONE,
        data={**FINISHED_DATA, "crash": None, **data},
    )


def finished_cell(**changes) -> CellRecord:
    """The cell as a CELL_FINISHED event carrying ``FINISHED_DATA`` leaves it (event 4 unless told)."""
    finished = {
        "state": CellState.DONE,
        "reason": "the guest panicked",
        "host": "local",
        "timings": (PhaseTimingRecord("boot 1", 20.5), PhaseTimingRecord("install", 3.0)),
        "started_at": 2.0,
        "finished_at": 9.0,
        "last_sequence": 4,
    }
    return replace(CELL, **{**finished, **changes})


@pytest.mark.parametrize(
    ("before", "incoming", "expected"),
    [
        pytest.param(
            RUN,
            event(1, RunEventKind.RUN_STARTED, at=5.0),
            replace(RUN, status=RunStatus.RUNNING, started_at=5.0, last_sequence=1),
            id="the first event starts the run",
        ),
        pytest.param(
            replace(RUN, status=RunStatus.RUNNING, started_at=5.0, last_sequence=1),
            event(2, cell_id="c", state=CellState.BOOTING, at=6.0),
            replace(RUN, status=RunStatus.RUNNING, started_at=5.0, last_sequence=2),
            id="a cell event moves only the sequence",
        ),
        pytest.param(
            replace(RUN, status=RunStatus.RUNNING, started_at=5.0, last_sequence=7),
            event(8, RunEventKind.RUN_FINISHED, at=9.0, verdict=RunVerdict.FAILED, detail="1 crashed"),
            replace(
                RUN,
                status=RunStatus.FINISHED,
                verdict=RunVerdict.FAILED,
                summary="1 crashed",
                started_at=5.0,
                finished_at=9.0,
                last_sequence=8,
            ),
            id="RUN_FINISHED gives the verdict",
        ),
        pytest.param(
            replace(RUN, status=RunStatus.RUNNING, last_sequence=7),
            event(
                8, RunEventKind.RUN_FINISHED, at=9.0, data={"verdict": "passed", "summary": "all 2 passed"}
            ),
            replace(
                RUN,
                status=RunStatus.FINISHED,
                verdict=RunVerdict.PASSED,
                summary="all 2 passed",
                started_at=9.0,
                finished_at=9.0,
                last_sequence=8,
            ),
            id="the verdict may come in the data",
        ),
        pytest.param(
            replace(RUN, status=RunStatus.RUNNING, last_sequence=8),
            event(8, RunEventKind.RUN_FINISHED, verdict=RunVerdict.FAILED),
            replace(RUN, status=RunStatus.RUNNING, last_sequence=8),
            id="a repeated event changes nothing",
        ),
    ],
)
def test_run_projection(before, incoming, expected):
    assert apply_to_run(before, incoming) == expected


@pytest.mark.parametrize(
    ("before", "incoming", "expected"),
    [
        pytest.param(
            CELL,
            event(2, cell_id="c", state=CellState.PROVISIONING, phase="clone", host="local", detail="Begin"),
            replace(
                CELL,
                state=CellState.PROVISIONING,
                phase="clone",
                host="local",
                detail="Begin",
                started_at=2.0,
                last_sequence=2,
            ),
            id="leaving pending starts the clock",
        ),
        pytest.param(
            replace(
                CELL, state=CellState.BOOTING, phase="boot 1", host="local", started_at=2.0, last_sequence=3
            ),
            event(4, RunEventKind.CELL_NOTE, cell_id="c", state=CellState.BOOTING, detail="unexpected reset"),
            replace(
                CELL,
                state=CellState.BOOTING,
                phase="boot 1",
                host="local",
                detail="unexpected reset",
                started_at=2.0,
                last_sequence=4,
            ),
            id="a note keeps phase and host",
        ),
        pytest.param(
            replace(CELL, state=CellState.BOOTING, started_at=2.0, last_sequence=5),
            event(
                6,
                cell_id="c",
                state=CellState.DONE,
                phase="hung",
                outcome=CellOutcome.HUNG,
                detail="no readiness in 300s",
            ),
            replace(
                CELL,
                state=CellState.DONE,
                phase="hung",
                outcome=CellOutcome.HUNG,
                reason="no readiness in 300s",
                detail="no readiness in 300s",
                started_at=2.0,
                finished_at=6.0,
                last_sequence=6,
            ),
            id="the machine's end gives the outcome",
        ),
        pytest.param(
            replace(CELL, state=CellState.CLEANING_UP, host="local", started_at=2.0, last_sequence=8),
            event(
                9,
                RunEventKind.CELL_FINISHED,
                cell_id="c",
                state=CellState.DONE,
                phase="crashed",
                outcome=CellOutcome.CRASHED,
                detail="BUG: kernel NULL pointer dereference",
                host="local",
                data=FINISHED_DATA,
            ),
            finished_cell(
                phase="crashed",
                outcome=CellOutcome.CRASHED,
                crash_title="BUG: kernel NULL pointer dereference",
                detail="BUG: kernel NULL pointer dereference",
                last_sequence=9,
            ),
            id="CELL_FINISHED carries the result",
        ),
        pytest.param(
            replace(
                CELL,
                state=CellState.DONE,
                outcome=CellOutcome.INFRA_ERROR,
                reason="libvirt went away",
                finished_at=7.0,
                started_at=2.0,
                last_sequence=7,
                observed=CellOutcome.INFRA_ERROR,
                expected_outcome=CellOutcome.HUNG,
            ),
            event(
                8,
                RunEventKind.CELL_NOTE,
                cell_id="c",
                state=CellState.PENDING,
                phase="retrying on a fresh clone",
                attempt=2,
                detail="attempt 1 ended infra_error",
            ),
            replace(
                CELL,
                state=CellState.PENDING,
                phase="retrying on a fresh clone",
                detail="attempt 1 ended infra_error",
                attempt=2,
                started_at=2.0,
                last_sequence=8,
            ),
            id="a retry clears what the attempt before ended with",
        ),
        pytest.param(
            BOOTING,
            finishing(outcome="infra_error", observed="hung", expected_outcome="hung"),
            finished_cell(
                outcome=CellOutcome.INFRA_ERROR, observed=CellOutcome.HUNG, expected_outcome=CellOutcome.HUNG
            ),
            id="CELL_FINISHED of a control image carries what it did and was declared to do",
        ),
        pytest.param(
            BOOTING,
            finishing(observed="exploded", expected_outcome=7),
            finished_cell(outcome=CellOutcome.CRASHED),
            id="an outcome the engine never names is read as none",
        ),
        pytest.param(
            replace(CELL, state=CellState.SOAKING, last_sequence=9),
            event(9, cell_id="c", state=CellState.BOOTING),
            replace(CELL, state=CellState.SOAKING, last_sequence=9),
            id="a repeated event changes nothing",
        ),
        pytest.param(
            replace(CELL, state=CellState.SOAKING, last_sequence=9),
            event(5, cell_id="c", state=CellState.BOOTING),
            replace(CELL, state=CellState.SOAKING, last_sequence=9),
            id="an older event changes nothing",
        ),
    ],
)
def test_cell_projection(before, incoming, expected):
    assert apply_to_cell(before, incoming) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([{"phase": "boot", "seconds": 1}], (PhaseTimingRecord("boot", 1.0),)),
        ([{"phase": "boot"}, "junk", {"phase": "x", "seconds": "2.5"}], (PhaseTimingRecord("x", 2.5),)),
        (None, ()),
        ({"phase": "boot"}, ()),
    ],
)
def test_timings_are_read_leniently(raw, expected):
    assert timings_from(raw) == expected


def test_the_engines_result_finishes_run_and_cell_whatever_events_were_seen():
    result = RunResult(
        run_id="r",
        matrix_name="m",
        candidate_name="c",
        candidate_version="1",
        artifact_digests={"a": "0" * 64},
        verdict=RunVerdict.INCONCLUSIVE,
        summary="1 infra_error",
        cells=[
            CellResult(
                "c",
                "img",
                "k",
                "local",
                CellOutcome.INFRA_ERROR,
                "host gone",
                timings=[PhaseTiming("boot 1", 4.0)],
                started_at=3.0,
                finished_at=8.0,
                attempt=2,
                observed=CellOutcome.HUNG,
                expected_outcome=CellOutcome.HUNG,
            )
        ],
        evidence_dir="/e",
        started_at=1.0,
        finished_at=10.0,
    )

    run = run_from_result(RUN, result)
    cell = cell_from_result(CELL, result.cells[0])

    assert (run.status, run.verdict, run.summary, run.started_at, run.finished_at) == (
        RunStatus.FINISHED,
        RunVerdict.INCONCLUSIVE,
        "1 infra_error",
        1.0,
        10.0,
    )
    assert run.result == result.as_dict()
    assert cell == replace(
        CELL,
        state=CellState.DONE,
        outcome=CellOutcome.INFRA_ERROR,
        reason="host gone",
        host="local",
        attempt=2,
        timings=(PhaseTimingRecord("boot 1", 4.0),),
        started_at=3.0,
        finished_at=8.0,
        observed=CellOutcome.HUNG,
        expected_outcome=CellOutcome.HUNG,
    )
    assert (cell.as_expected, cell.verdict_outcome) == (True, CellOutcome.PASSED)


@pytest.mark.parametrize(
    ("observed", "expected_outcome", "as_expected"),
    [
        (CellOutcome.HUNG, CellOutcome.HUNG, True),
        (CellOutcome.CRASHED, CellOutcome.HUNG, False),  # a control image doing something else
        (None, CellOutcome.HUNG, False),  # ended before the guest did anything
        (CellOutcome.INFRA_ERROR, None, False),  # not a control image
    ],
)
def test_only_a_control_image_doing_as_declared_counts_as_passed(observed, expected_outcome, as_expected):
    cell = replace(
        CELL,
        state=CellState.DONE,
        outcome=CellOutcome.INFRA_ERROR,
        observed=observed,
        expected_outcome=expected_outcome,
    )
    assert cell.as_expected is as_expected
    assert cell.verdict_outcome is (CellOutcome.PASSED if as_expected else CellOutcome.INFRA_ERROR)
