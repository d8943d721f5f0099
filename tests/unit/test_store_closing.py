"""Closing a run nobody can finish (pure), and the store's reads a restart needs: the finished cells'
results, how often a run was started, its progress — on SQLite (PostgreSQL: the API tier)."""

import pytest

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind
from orchestrator.store import CellRecord, RunRecord, RunStatus, SqlRunStore, open_database
from orchestrator.store.closing import close_interrupted, planned_cells

pytestmark = pytest.mark.unit

PLAN = {
    "matrix_name": "m",
    "candidate_name": "sensor",
    "candidate_version": "1.0",
    "artifact_digests": {"pkg": "a" * 64},
    "matrix_sha256": "b" * 64,
    "cells": [
        {"cell_id": "n", "image": {"name": "debian12-kernel-n", "kernel": "6.1.0-56-amd64"}},
        {"cell_id": "n1", "image": {"name": "debian12-kernel-n1", "kernel": "6.1.0-55-amd64"}},
        {"cell_id": "n2", "image": {"name": "debian12-kernel-n2", "kernel": "6.1.0-54-amd64"}},
    ],
}


def record(**changes) -> RunRecord:
    fields = {
        "run_id": "r",
        "status": RunStatus.RUNNING,
        "plan": PLAN,
        "evidence_dir": "/runs/r",
        "created_at": 100.0,
        "started_at": 101.0,
        "last_sequence": 7,
        "cells": (
            CellRecord(
                "r", "n", state=CellState.DONE, outcome=CellOutcome.PASSED, attempt=1, last_sequence=5
            ),
            CellRecord("r", "n1", state=CellState.BOOTING, host="local", attempt=2, last_sequence=7),
            CellRecord("r", "n2"),
        ),
    }
    return RunRecord(**{**fields, **changes})


PASSED = CellResult("n", "debian12-kernel-n", "6.1.0-56-amd64", "local", CellOutcome.PASSED, "ok")


def test_planned_cells_are_read_from_the_plan_in_order():
    assert planned_cells(PLAN) == [
        ("n", "debian12-kernel-n", "6.1.0-56-amd64"),
        ("n1", "debian12-kernel-n1", "6.1.0-55-amd64"),
        ("n2", "debian12-kernel-n2", "6.1.0-54-amd64"),
    ]
    assert planned_cells({"cells": None}) == []


def test_finished_cells_stand_and_the_others_end_infra_error_after_the_last_event():
    events, result = close_interrupted(record(), [PASSED], "interrupted: the candidate is gone", at=200.0)

    assert [(e.sequence, e.kind, e.cell_id) for e in events] == [
        (8, RunEventKind.CELL_FINISHED, "n1"),
        (9, RunEventKind.CELL_FINISHED, "n2"),
        (10, RunEventKind.RUN_FINISHED, None),
    ]
    assert events[0].data is not None and events[0].data["outcome"] == "infra_error"
    assert (events[0].host, events[0].attempt) == ("local", 2)
    assert [c.outcome for c in result.cells] == [
        CellOutcome.PASSED,
        CellOutcome.INFRA_ERROR,
        CellOutcome.INFRA_ERROR,
    ]
    assert result.cells[1].reason == "interrupted: the candidate is gone"
    assert result.verdict is RunVerdict.INCONCLUSIVE
    assert events[-1].verdict is RunVerdict.INCONCLUSIVE
    assert (result.started_at, result.finished_at) == (101.0, 200.0)
    assert (result.matrix_name, result.candidate_name, result.artifact_digests) == (
        "m",
        "sensor",
        {"pkg": "a" * 64},
    )


def test_a_candidate_failure_that_had_finished_still_fails_the_run():
    crashed = CellResult(
        "n", "debian12-kernel-n", "k", "local", CellOutcome.CRASHED, "panic", crash={"title": "BUG"}
    )

    _, result = close_interrupted(record(), [crashed], "interrupted", at=200.0)

    assert result.verdict is RunVerdict.FAILED


def test_a_run_never_started_is_closed_from_its_creation_time():
    _, result = close_interrupted(
        record(started_at=None, cells=(), last_sequence=0), [], "interrupted", at=200.0
    )

    assert result.started_at == 100.0
    assert len(result.cells) == 3


def test_closing_events_move_the_stored_run_to_finished(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    try:
        store = SqlRunStore(database)
        store.create_run(
            "r",
            PLAN,
            candidate_id=None,
            matrix_id=None,
            priority=0,
            submitted_by=None,
            evidence_dir="/runs/r",
        )
        store.append_event(RunEvent("r", 1, 101.0, RunEventKind.RUN_STARTED))
        store.append_event(
            RunEvent(
                "r",
                2,
                102.0,
                RunEventKind.CELL_FINISHED,
                cell_id="n",
                outcome=CellOutcome.PASSED,
                data=PASSED.as_dict(),
            )
        )
        stored = store.get_run("r")
        assert stored is not None

        events, result = close_interrupted(
            stored, [CellResult.from_dict(d) for d in store.cell_results("r")], "gone", 300.0
        )
        for event in events:
            store.append_event(event)
        assert not store.has_result("r")  # run_finished is stored, the result not yet
        store.finish_run(result)
        assert store.has_result("r") and store.has_result("deleted")  # nothing more to wait for

        closed = store.get_run("r")
        assert closed is not None
        assert (closed.status, closed.verdict) == (RunStatus.FINISHED, RunVerdict.INCONCLUSIVE)
        assert {c.cell_id: c.outcome for c in closed.cells} == {
            "n": CellOutcome.PASSED,
            "n1": CellOutcome.INFRA_ERROR,
            "n2": CellOutcome.INFRA_ERROR,
        }
        assert store.run_progress("r") == (RunStatus.FINISHED, 5, RunVerdict.INCONCLUSIVE)
    finally:
        database.close()


def test_the_store_reads_what_a_restart_needs(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    try:
        store = SqlRunStore(database)
        store.create_run(
            "r",
            PLAN,
            candidate_id=None,
            matrix_id=None,
            priority=0,
            submitted_by=None,
            evidence_dir="/runs/r",
        )
        retried = CellResult(
            "n", "debian12-kernel-n", "k", "local", CellOutcome.INFRA_ERROR, "first", attempt=1
        )
        for sequence, event in enumerate(
            [
                RunEvent("r", 0, 1.0, RunEventKind.RUN_STARTED),
                RunEvent("r", 0, 2.0, RunEventKind.CELL_FINISHED, cell_id="n", data=retried.as_dict()),
                RunEvent("r", 0, 3.0, RunEventKind.RUN_STARTED, detail="resumed"),
                RunEvent("r", 0, 4.0, RunEventKind.CELL_FINISHED, cell_id="n", data=PASSED.as_dict()),
                RunEvent("r", 0, 5.0, RunEventKind.CELL_CHANGED, cell_id="n1", state=CellState.BOOTING),
            ],
            start=1,
        ):
            store.append_event(RunEvent(**{**event.__dict__, "sequence": sequence}))

        assert [CellResult.from_dict(d).outcome for d in store.cell_results("r")] == [CellOutcome.PASSED]
        assert store.count_events("r", RunEventKind.RUN_STARTED) == 2
        assert store.count_events("r", RunEventKind.RUN_FINISHED) == 0
        assert store.run_progress("r") == (RunStatus.RUNNING, 5, None)
        assert store.run_progress("nope") is None
        assert store.cell_results("nope") == []
    finally:
        database.close()
