"""The SQL run store on SQLite: migrations, events persisted before anyone hears of them, the
projection, listings, and many threads at once. (tests/api/test_store_postgres.py runs these same
tests on PostgreSQL.)"""

import threading
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.engine.event_bus import EventBus
from orchestrator.errors import ConfigurationError, InternalError
from orchestrator.store import Database, MatrixStore, RunStatus, SqlRunStore, open_database
from orchestrator.store.database import MIGRATIONS_DIR
from orchestrator.store.models import Base

pytestmark = pytest.mark.unit

MATRIX = "name: m\nimages: [debian12-kernel-n]\n"


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'testbed.db'}"


@pytest.fixture
def database(database_url) -> Iterator[Database]:
    opened = open_database(database_url)
    yield opened
    opened.close()


@pytest.fixture
def store(database) -> SqlRunStore:
    return SqlRunStore(database)


def plan(*cells: str) -> dict:
    return {"matrix_name": "m", "cells": [{"cell_id": cell} for cell in cells]}


def accept(store: SqlRunStore, run_id: str, *cells: str, **details) -> None:
    arguments = {
        "candidate_id": None,
        "matrix_id": None,
        "priority": 0,
        "submitted_by": "tester",
        "evidence_dir": f"/runs/{run_id}",
    }
    store.create_run(run_id, plan(*cells), **{**arguments, **details})


def event(run_id: str, sequence: int, kind: RunEventKind = RunEventKind.CELL_CHANGED, **fields) -> RunEvent:
    return RunEvent(run_id=run_id, sequence=sequence, at=1000.0 + sequence, kind=kind, **fields)


def result(run_id: str, verdict: RunVerdict, *outcomes: tuple[str, CellOutcome]) -> RunResult:
    return RunResult(
        run_id=run_id,
        matrix_name="m",
        candidate_name="c",
        candidate_version="1",
        artifact_digests={"pkg": "0" * 64},
        verdict=verdict,
        summary=f"{verdict}",
        cells=[CellResult(cell, "img", "k", "local", outcome, str(outcome)) for cell, outcome in outcomes],
        evidence_dir=f"/runs/{run_id}",
        started_at=1.0,
        finished_at=2.0,
    )


# -- schema ---------------------------------------------------------------------------------------


def test_migrations_build_the_schema_from_empty_exactly_as_the_models_describe_it(database):
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        tables = set(inspect(connection).get_table_names())
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()

    assert differences == []
    assert {"candidates", "matrices", "runs", "cells", "events", "tokens"} <= tables
    assert revision == "0002_cell_expectations"


def test_opening_again_migrates_nothing_and_keeps_the_data(database_url, store):
    accept(store, "kept", "a")

    again = open_database(database_url)
    try:
        assert SqlRunStore(again).get_run("kept") is not None
    finally:
        again.close()


def control_image_result(run_id: str) -> RunResult:
    """A run of two control cells: one hung as its image declares, one crashed instead."""
    outcome = result(run_id, RunVerdict.INCONCLUSIVE)
    outcome.cells = [
        CellResult(
            cell,
            "control-hang",
            "k",
            "local",
            CellOutcome.INFRA_ERROR,
            "before the candidate was installed: boot 1 did not become ready",
            observed=observed,
            expected_outcome=CellOutcome.HUNG,
        )
        for cell, observed in (("declared", CellOutcome.HUNG), ("other", CellOutcome.CRASHED))
    ]
    return outcome


def test_a_control_image_doing_as_declared_is_stored_as_such_and_counted_as_passed(store):
    accept(store, "r1", "declared", "other")

    store.finish_run(control_image_result("r1"))

    run = store.get_run("r1")
    listed, _ = store.list_runs()
    assert [(c.cell_id, c.outcome, c.observed, c.as_expected) for c in run.cells] == [
        ("declared", CellOutcome.INFRA_ERROR, CellOutcome.HUNG, True),
        ("other", CellOutcome.INFRA_ERROR, CellOutcome.CRASHED, False),
    ]
    assert run.cell_counts == listed[0].cell_counts == {"passed": 1, "infra_error": 1}


def test_upgrading_a_store_of_the_first_schema_fills_the_new_columns_from_stored_results(database_url):
    first = open_database(database_url)
    accept(SqlRunStore(first), "old", "declared", "other")
    SqlRunStore(first).finish_run(control_image_result("old"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with first.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001_initial")  # as a store written before 0002 has it
    first.close()

    upgraded = open_database(database_url)
    try:
        run = SqlRunStore(upgraded).get_run("old")
    finally:
        upgraded.close()

    assert run is not None and run.verdict is RunVerdict.INCONCLUSIVE  # nothing stored was lost
    assert [(c.cell_id, c.observed, c.expected_outcome) for c in run.cells] == [
        ("declared", CellOutcome.HUNG, CellOutcome.HUNG),
        ("other", CellOutcome.CRASHED, CellOutcome.HUNG),
    ]
    assert run.cell_counts == {"passed": 1, "infra_error": 1}


def test_the_embedded_database_runs_in_wal_mode(database):
    if database.dialect != "sqlite":
        pytest.skip("WAL is SQLite's")
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


# -- runs and events ----------------------------------------------------------------------------


def test_a_run_exists_from_acceptance_queued_with_a_pending_cell_per_planned_cell(store):
    accept(store, "r1", "n", "n1", priority=5)

    run = store.get_run("r1")

    assert run is not None
    assert (run.status, run.verdict, run.priority, run.submitted_by) == (RunStatus.QUEUED, None, 5, "tester")
    assert run.plan == plan("n", "n1")
    assert [(c.cell_id, c.state) for c in run.cells] == [("n", CellState.PENDING), ("n1", CellState.PENDING)]
    assert run.cell_counts == {"pending": 2}


def test_accepting_the_same_run_twice_is_a_bug(store):
    accept(store, "r1", "a")

    with pytest.raises(InternalError, match="exists already"):
        accept(store, "r1", "a")


def test_a_run_may_only_name_stored_candidates_and_matrices(store, database):
    matrix, _ = MatrixStore(database).add(MATRIX)

    accept(store, "with-matrix", "a", matrix_id=matrix.matrix_id)
    with pytest.raises(ConfigurationError, match="candidate_id"):
        accept(store, "r2", "a", candidate_id="f" * 64)
    with pytest.raises(ConfigurationError, match="matrix_id"):
        accept(store, "r3", "a", matrix_id="e" * 64)

    assert store.get_run("with-matrix").matrix_id == matrix.matrix_id
    assert store.get_run("r2") is None


def test_an_event_is_committed_when_append_returns(store, database_url):
    accept(store, "r1", "a")
    elsewhere = open_database(database_url)  # another connection pool, as another process would have
    try:
        store.append_event(event("r1", 1, RunEventKind.RUN_STARTED))

        assert [e.sequence for e in SqlRunStore(elsewhere).events_after("r1", 0)] == [1]
    finally:
        elsewhere.close()


def test_events_are_persisted_before_any_subscriber_hears_of_them(store, database_url):
    accept(store, "r1", "a")
    elsewhere = open_database(database_url)
    reader = SqlRunStore(elsewhere)
    bus = EventBus(store)
    subscription = bus.subscribe("r1")
    try:
        for sequence in range(1, 6):
            bus.publish(event("r1", sequence, cell_id="a", state=CellState.BOOTING))
            heard = subscription.get(timeout=5)
            # When a subscriber hears of an event, another connection already reads it back.
            assert heard is not None
            assert [e.sequence for e in reader.events_after("r1", heard.sequence - 1)] == [heard.sequence]
    finally:
        subscription.close()
        elsewhere.close()


def test_events_come_back_in_order_after_a_sequence_and_up_to_a_limit(store):
    accept(store, "r1", "a")
    accept(store, "other", "a")
    for sequence in (3, 1, 2, 5, 4):  # stored as they come, read back in order
        store.append_event(event("r1", sequence, cell_id="a", state=CellState.BOOTING, detail=f"#{sequence}"))
    store.append_event(event("other", 1))

    assert [e.sequence for e in store.events_after("r1", 0)] == [1, 2, 3, 4, 5]
    assert [e.sequence for e in store.events_after("r1", 2, limit=2)] == [3, 4]
    assert store.events_after("r1", 5) == []
    assert store.events_after("r1", 3)[0] == event(
        "r1", 4, cell_id="a", state=CellState.BOOTING, detail="#4"
    )  # every field survives the round trip


def test_the_same_event_delivered_twice_is_stored_once(store):
    accept(store, "r1", "a")
    finished = event(
        "r1",
        1,
        RunEventKind.CELL_FINISHED,
        cell_id="a",
        outcome=CellOutcome.PASSED,
        data={"outcome": "passed", "timings": [{"phase": "boot", "seconds": 1.0}], "warnings": ("w",)},
    )

    store.append_event(finished)
    store.append_event(finished)

    assert len(store.events_after("r1", 0)) == 1


def test_another_event_under_a_taken_sequence_is_a_bug_and_changes_nothing(store):
    accept(store, "r1", "a")
    store.append_event(event("r1", 1, cell_id="a", state=CellState.BOOTING))

    with pytest.raises(InternalError, match="event 1 is stored already"):
        store.append_event(event("r1", 1, cell_id="a", state=CellState.DONE, outcome=CellOutcome.CRASHED))

    assert store.get_run("r1").cells[0].state is CellState.BOOTING
    assert [e.state for e in store.events_after("r1", 0)] == [CellState.BOOTING]


def test_events_of_a_run_never_accepted_are_refused(store):
    with pytest.raises(InternalError, match="create_run first"):
        store.append_event(event("ghost", 1))


def test_the_projection_follows_a_cells_life(store):
    accept(store, "r1", "a", "b")
    store.append_event(event("r1", 1, RunEventKind.RUN_STARTED))
    store.append_event(event("r1", 2, cell_id="a", state=CellState.PROVISIONING, host="local"))
    store.append_event(event("r1", 3, cell_id="a", state=CellState.BOOTING, phase="boot 1", host="local"))
    store.append_event(
        event(
            "r1",
            4,
            RunEventKind.CELL_FINISHED,
            cell_id="a",
            state=CellState.DONE,
            phase="crashed",
            outcome=CellOutcome.CRASHED,
            detail="Kernel panic - not syncing: Fatal exception",
            host="local",
            data={
                "outcome": "crashed",
                "reason": "panic reported by the hypervisor",
                "crash": {"title": "Kernel panic - not syncing: Fatal exception"},
                "timings": [{"phase": "boot 1", "seconds": 12.5}],
                "started_at": 1002.0,
                "finished_at": 1004.0,
            },
        )
    )
    store.append_event(event("r1", 5, cell_id="extra", state=CellState.PENDING))  # not in the plan

    run = store.get_run("r1")
    a = store.get_cell("r1", "a")

    assert run.status is RunStatus.RUNNING
    assert run.started_at == 1001.0
    assert run.last_sequence == 5
    assert (a.state, a.outcome, a.crash_title, a.reason, a.host) == (
        CellState.DONE,
        CellOutcome.CRASHED,
        "Kernel panic - not syncing: Fatal exception",
        "panic reported by the hypervisor",
        "local",
    )
    assert [(t.phase, t.seconds) for t in a.timings] == [("boot 1", 12.5)]
    assert (a.started_at, a.finished_at) == (1002.0, 1004.0)
    assert [c.cell_id for c in run.cells] == ["a", "b", "extra"]
    assert run.cell_counts == {"crashed": 1, "pending": 2}

    store.append_event(
        event("r1", 6, RunEventKind.RUN_FINISHED, verdict=RunVerdict.FAILED, detail="a crashed")
    )

    finished = store.get_run("r1")
    assert (finished.status, finished.verdict, finished.summary) == (
        RunStatus.FINISHED,
        RunVerdict.FAILED,
        "a crashed",
    )


def test_finishing_a_run_sets_verdict_result_and_every_cell_whatever_events_were_lost(store):
    accept(store, "r1", "a", "b")
    outcome = result("r1", RunVerdict.FAILED, ("a", CellOutcome.PASSED), ("b", CellOutcome.BOOT_LOOP))

    store.finish_run(outcome)

    run = store.get_run("r1")
    assert (run.status, run.verdict, run.finished_at) == (RunStatus.FINISHED, RunVerdict.FAILED, 2.0)
    assert run.result == outcome.as_dict()
    assert [(c.cell_id, c.state, c.outcome) for c in run.cells] == [
        ("a", CellState.DONE, CellOutcome.PASSED),
        ("b", CellState.DONE, CellOutcome.BOOT_LOOP),
    ]


def test_listing_filters_pages_and_counts_newest_first(store):
    for index in range(5):
        accept(store, f"r{index}", "a", "b", submitted_by="ci" if index % 2 else "qa")
    store.finish_run(result("r1", RunVerdict.PASSED, ("a", CellOutcome.PASSED), ("b", CellOutcome.PASSED)))
    store.finish_run(result("r3", RunVerdict.FAILED, ("a", CellOutcome.CRASHED), ("b", CellOutcome.PASSED)))

    everything, total = store.list_runs()
    page, page_total = store.list_runs(limit=2, offset=1)
    failed, failed_total = store.list_runs(verdict=RunVerdict.FAILED)
    ci_queued, _ = store.list_runs(status=RunStatus.QUEUED, submitted_by="ci")
    nothing, none_total = store.list_runs(submitted_by="nobody")

    assert [r.run_id for r in everything] == ["r4", "r3", "r2", "r1", "r0"]
    assert total == page_total == 5
    assert [r.run_id for r in page] == ["r3", "r2"]
    assert ([r.run_id for r in failed], failed_total) == (["r3"], 1)
    assert failed[0].cell_counts == {"crashed": 1, "passed": 1}
    assert failed[0].cells == ()  # listings carry counts, not cells
    assert ci_queued == []
    assert (nothing, none_total) == ([], 0)


def test_unfinished_runs_are_the_queued_and_running_ones_with_their_cells(store):
    accept(store, "queued", "a")
    accept(store, "running", "a")
    accept(store, "done", "a")
    store.append_event(event("running", 1, cell_id="a", state=CellState.INSTALLING, host="local"))
    store.finish_run(result("done", RunVerdict.PASSED, ("a", CellOutcome.PASSED)))

    unfinished = store.unfinished_runs()

    assert [(r.run_id, r.status) for r in unfinished] == [
        ("queued", RunStatus.QUEUED),
        ("running", RunStatus.RUNNING),
    ]
    assert unfinished[1].cells[0].state is CellState.INSTALLING
    assert unfinished[1].cells[0].host == "local"


def test_metrics_counts(store):
    accept(store, "r1", "a", "b")
    accept(store, "r2", "a")
    store.finish_run(result("r1", RunVerdict.FAILED, ("a", CellOutcome.CRASHED), ("b", CellOutcome.CRASHED)))

    assert store.runs_by_verdict() == {
        (RunStatus.FINISHED, RunVerdict.FAILED): 1,
        (RunStatus.QUEUED, None): 1,
    }
    assert store.cells_by_outcome() == {CellOutcome.CRASHED: 2}


# -- many threads -------------------------------------------------------------------------------


def run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def guarded(target):
        def body():
            start.wait()
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - the test reports every thread's failure
                errors.append(exc)

        return body

    threads = [threading.Thread(target=guarded(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_many_threads_appending_to_many_runs_lose_nothing(store):
    runs = [f"r{index}" for index in range(6)]
    for run_id in runs:
        accept(store, run_id, "a", "b")

    def append_all(run_id: str):
        def work():
            for sequence in range(1, 41):
                cell = "a" if sequence % 2 else "b"
                store.append_event(event(run_id, sequence, cell_id=cell, state=CellState.BOOTING))

        return work

    errors = run_threads([append_all(run_id) for run_id in runs])

    assert errors == []
    for run_id in runs:
        assert [e.sequence for e in store.events_after(run_id, 0)] == list(range(1, 41))
        run = store.get_run(run_id)
        assert run.last_sequence == 40
        assert {c.cell_id: c.last_sequence for c in run.cells} == {"a": 39, "b": 40}


def test_threads_numbering_one_runs_events_out_of_order_and_redelivering_them_store_each_once(store):
    accept(store, "r1", "a")
    numbers = iter(range(1, 121))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                sequence = next(numbers, None)
            if sequence is None:
                return
            store.append_event(event("r1", sequence, cell_id="a", state=CellState.STABILIZING))
            store.append_event(event("r1", sequence, cell_id="a", state=CellState.STABILIZING))  # again

    errors = run_threads([work] * 8)

    assert errors == []
    assert [e.sequence for e in store.events_after("r1", 0)] == list(range(1, 121))
    assert store.get_run("r1").last_sequence == 120
    assert store.get_cell("r1", "a").last_sequence == 120
