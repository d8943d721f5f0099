"""The status page in a real headless Chromium (Debian's, driven by Playwright; no browser is ever
downloaded): log in with a token, watch a run's grid change without a reload, read a cell page
whose console printed ANSI escapes and <script> — shown as text, never run.

Runs are written straight into the service's store, as an engine in another process would (the
page follows the store), so what the page shows and when is decided by the test, not by timing.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.store import SqlRunStore, open_database
from tests.api.conftest import Service, running_service

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
TITLE = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
PLAN = {
    "matrix_name": "browser",
    "candidate_name": "sensor",
    "candidate_version": "7.4.0",
    "cells": [
        {
            "cell_id": "debian12-kernel-n",
            "image": {"name": "debian12-kernel-n", "os_family": "linux"},
            "coinstalled": [],
        },
        {
            "cell_id": "debian12-kernel-n1",
            "image": {"name": "debian12-kernel-n1", "os_family": "linux"},
            "coinstalled": [],
        },
    ],
}
HOSTILE_CONSOLE = (
    "[    0.000000] Linux version 6.1.0-56-amd64\n"
    "\x1b[2J\x1b[H\x1b[31mthe guest cleared the screen\x1b[0m\n"
    "<script>window.__pwned = 1; document.title = 'pwned'</script>\n"
    '<img src=x onerror="window.__pwned = 2">\n'
    "[  120.934192] BUG: kernel NULL pointer dereference, address: 0000000000000010\n"
    "[  120.939681] Oops: 0000 [#1] PREEMPT SMP NOPTI\n"
    "[  120.953118] Kernel panic - not syncing: Fatal exception\n"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    state_dir = tmp_path_factory.mktemp("browser-service")
    with running_service("sqlite", state_dir, f"sqlite:///{state_dir / 'testbed.db'}") as running:
        yield running


@pytest.fixture
def store(service) -> Iterator[SqlRunStore]:
    database = open_database(service.database_url)
    yield SqlRunStore(database)
    database.close()


@pytest.fixture(scope="module")
def chromium():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, service):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, service: Service, target: str) -> None:
    page.goto(service.base_url + target)
    assert page.url.startswith(service.base_url + "/login")  # evidence is not public
    page.fill("#token", service.tokens["viewer"])
    page.click("button[type=submit]")
    page.wait_for_url(service.base_url + target)


def new_run(store: SqlRunStore, service: Service, run_id: str) -> Path:
    evidence = service.state_dir / "runs" / run_id
    evidence.mkdir(parents=True)
    store.create_run(
        run_id,
        PLAN,
        candidate_id=None,
        matrix_id=None,
        priority=0,
        submitted_by="qa",
        evidence_dir=str(evidence),
    )
    return evidence


def test_a_viewer_logs_in_and_watches_a_cell_change_state_without_a_reload(page, service, store, tmp_path):
    run_id = "20260719-041000-b0b0"
    new_run(store, service, run_id)
    store.append_event(RunEvent(run_id, 1, 1000.0, RunEventKind.RUN_STARTED, detail="2 cell(s)"))
    log_in(page, service, f"/runs/{run_id}")
    cell = page.locator('td[data-cell-id="debian12-kernel-n"]')
    assert cell.locator('[data-field="state"]').inner_text() == "pending"
    page.evaluate("window.__sameDocument = true")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    store.append_event(
        RunEvent(
            run_id,
            2,
            1001.0,
            RunEventKind.CELL_CHANGED,
            cell_id="debian12-kernel-n",
            state=CellState.BOOTING,
            phase="boot 1/3: waiting for readiness",
            host="local",
        )
    )
    cell.locator('[data-field="state"]').filter(has_text="booting").wait_for()
    booting = cell.locator('[data-field="phase"]').inner_text()
    page.screenshot(path=tmp_path / "run-page-booting.png", full_page=True)

    crashed = CellResult(
        "debian12-kernel-n",
        "debian12-kernel-n",
        "6.1.0-56-amd64",
        "local",
        CellOutcome.CRASHED,
        "panicked",
        crash={"title": TITLE},
        started_at=1001.0,
        finished_at=1090.0,
    )
    store.append_event(
        RunEvent(
            run_id,
            3,
            1090.0,
            RunEventKind.CELL_FINISHED,
            cell_id="debian12-kernel-n",
            state=CellState.DONE,
            phase="crashed",
            outcome=CellOutcome.CRASHED,
            detail=TITLE,
            data=crashed.as_dict(),
        )
    )
    store.append_event(
        RunEvent(
            run_id,
            4,
            1091.0,
            RunEventKind.RUN_FINISHED,
            verdict=RunVerdict.FAILED,
            detail="1 of 2 cell(s) failed: debian12-kernel-n",
            data={"verdict": "failed"},
        )
    )
    store.finish_run(  # as the engine does right after run_finished: the stream's "end" waits for it
        RunResult(
            run_id,
            "m",
            "testbed-sensor",
            "1.0.0",
            {},
            RunVerdict.FAILED,
            "1 of 2 cell(s) failed: debian12-kernel-n",
            [crashed],
            "",
            1000.0,
            1091.0,
        )
    )
    page.wait_for_function("() => document.getElementById('live-status').textContent === 'finished'")
    page.screenshot(path=tmp_path / "run-page.png", full_page=True)

    assert booting == "boot 1/3: waiting for readiness"
    assert cell.locator('[data-field="state"]').inner_text() == "crashed"
    assert cell.locator('[data-field="title"]').inner_text() == TITLE
    assert cell.locator('[data-field="elapsed"]').inner_text() == "1m29s"
    assert "outcome-crashed" in cell.get_attribute("class")
    assert page.locator("[data-verdict]").inner_text() == "failed"
    assert (
        page.locator('td[data-cell-id="debian12-kernel-n1"] [data-field="state"]').inner_text() == "pending"
    )
    assert page.evaluate("window.__sameDocument") is True  # the same document all along: no reload
    assert navigations == []
    assert (tmp_path / "run-page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_control_image_that_hung_as_declared_turns_to_the_pass_it_counts_as(page, service, store):
    run_id = "20260719-042000-c0c0"
    new_run(store, service, run_id)
    store.append_event(RunEvent(run_id, 1, 1000.0, RunEventKind.RUN_STARTED, detail="2 cell(s)"))
    log_in(page, service, f"/runs/{run_id}")
    cell = page.locator('td[data-cell-id="debian12-kernel-n1"]')
    hung = CellResult(
        "debian12-kernel-n1",
        "debian12-kernel-n1",
        "6.1.0-55-amd64",
        "local",
        CellOutcome.INFRA_ERROR,
        "before the candidate was installed: boot 1 did not become ready within 20s",
        started_at=1001.0,
        finished_at=1030.0,
        observed=CellOutcome.HUNG,
        expected_outcome=CellOutcome.HUNG,
    )

    store.append_event(
        RunEvent(
            run_id,
            2,
            1030.0,
            RunEventKind.CELL_FINISHED,
            cell_id="debian12-kernel-n1",
            state=CellState.DONE,
            outcome=CellOutcome.INFRA_ERROR,
            detail=hung.reason,
            data=hung.as_dict(),
        )
    )
    cell.locator('[data-field="state"]').filter(has_text="hung (expected)").wait_for()
    live = cell.get_attribute("class").split()
    page.reload()
    reloaded = cell.get_attribute("class").split()

    for classes in (live, reloaded):  # as the event stream drew it, and as the server renders it
        assert {"outcome-passed", "as-expected"} <= set(classes), classes
        assert "outcome-infra_error" not in classes
    assert cell.locator('[data-field="state"]').inner_text() == "hung (expected)"


def test_what_a_guest_printed_shows_as_text_on_the_cell_page(page, service, store, tmp_path):
    run_id = "20260719-041500-c0c0"
    evidence = new_run(store, service, run_id) / "cells" / "debian12-kernel-n"
    evidence.mkdir(parents=True)
    (evidence / "console.log").write_text(HOSTILE_CONSOLE)
    excerpt = "\n".join(HOSTILE_CONSOLE.splitlines()[4:])
    (evidence / "crash.json").write_text(
        json.dumps({"title": TITLE, "module": "testbed_sensor", "excerpt": excerpt})
    )
    result = CellResult(
        "debian12-kernel-n",
        "debian12-kernel-n",
        "k",
        "local",
        CellOutcome.CRASHED,
        "panicked",
        crash={"title": TITLE},
    )
    store.append_event(
        RunEvent(
            run_id,
            1,
            1000.0,
            RunEventKind.CELL_FINISHED,
            cell_id="debian12-kernel-n",
            outcome=CellOutcome.CRASHED,
            data=result.as_dict(),
        )
    )

    log_in(page, service, f"/runs/{run_id}/cells/debian12-kernel-n")
    page.screenshot(path=tmp_path / "cell-page.png", full_page=True)
    console = page.locator("#console").inner_text()

    assert "<script>window.__pwned = 1; document.title = 'pwned'</script>" in console
    assert '<img src=x onerror="window.__pwned = 2">' in console
    assert page.evaluate("window.__pwned") is None  # nothing the guest printed ran
    assert page.title() != "pwned"
    assert "the guest cleared the screen" in console
    assert "\x1b" not in console and "[2J" not in console
    assert page.locator("#crash-title").inner_text() == TITLE
    highlighted = page.locator("#console .crash").all_inner_texts()
    assert [line.split("] ", 1)[1] for line in highlighted] == [
        "BUG: kernel NULL pointer dereference, address: 0000000000000010",
        "Oops: 0000 [#1] PREEMPT SMP NOPTI",
        "Kernel panic - not syncing: Fatal exception",
    ]
    assert "serial console (no video device)" in page.locator("main").inner_text()
    download = page.locator("a", has_text="console.log").get_attribute("href")
    assert download == f"/api/v1/runs/{run_id}/cells/debian12-kernel-n/evidence/console.log"
