"""What ``testbed gate`` prints: the grouped failures under the table, and guest text that can neither
drive the terminal nor be read as rich markup."""

import io

import pytest
from rich.console import Console

from api.cli.progress import RunProgress, print_result
from orchestrator.core.outcomes import CellOutcome, CellState, RunVerdict
from orchestrator.core.plan import RunPlan
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from tests.unit.conftest import build_plan

pytestmark = pytest.mark.unit

NULL_DEREF = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
HOSTILE_TITLE = "BUG: \x1b[2J\x1b]0;pwned\x07owned [bold]x[/bold] NUL\x00 \ud800 in evil_fn [evil]"


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=250, force_terminal=False, color_system=None), out


def cell(
    cell_id: str, outcome: CellOutcome, reason: str, title: str | None = None, **extra: object
) -> CellResult:
    crash = None if title is None else {"title": title, "module": "testbed_sensor"}
    return CellResult(
        cell_id,
        "debian12-kernel-n",
        "6.1.0-56-amd64",
        "local",
        outcome,
        reason,
        crash,
        evidence_dir=f"/runs/r1/cells/{cell_id}",
        **extra,
    )


def run(cells: list[CellResult], verdict: RunVerdict = RunVerdict.FAILED) -> RunResult:
    return RunResult(
        run_id="r1",
        matrix_name="incidents",
        candidate_name="sensor",
        candidate_version="1.1.0",
        artifact_digests={},
        verdict=verdict,
        summary="some summary",
        cells=cells,
        evidence_dir="/runs/r1",
        started_at=0.0,
        finished_at=1.0,
    )


def test_failures_are_grouped_under_the_table_each_group_listing_its_cells():
    cells = [
        *(
            cell(f"n~v{i}", CellOutcome.CRASHED, "the hypervisor reported a guest crash", NULL_DEREF)
            for i in range(6)
        ),
        cell("n", CellOutcome.PASSED, "3 boot(s) ready and stable"),
        cell("n1", CellOutcome.INFRA_ERROR, "host local: libvirt connection lost"),
    ]
    out_console, out = console()
    print_result(out_console, run(cells))
    text = out.getvalue()
    lines = text.splitlines()
    grouped = lines.index("failures, grouped:")
    assert lines[grouped + 1 :] == [
        f"  crashed on 6 of 8 cells: {NULL_DEREF}",
        "    n~v0, n~v1, n~v2, n~v3, n~v4, n~v5",
        "  infra_error on 1 of 8 cells: host local: libvirt connection lost",
        "    n1",
        "verdict: failed — some summary",
        "evidence: /runs/r1/run.json",
    ]
    assert text.index("┃ cell") < grouped_offset(text)  # the table comes first


def grouped_offset(text: str) -> int:
    return text.index("failures, grouped:")


def test_a_passing_run_prints_no_groups():
    out_console, out = console()
    print_result(out_console, run([cell("n", CellOutcome.PASSED, "ok")], RunVerdict.PASSED))
    assert "grouped" not in out.getvalue()


def test_guest_text_cannot_drive_the_terminal_or_become_markup():
    cells = [
        cell("a", CellOutcome.CRASHED, "reason", HOSTILE_TITLE),
        cell("b", CellOutcome.DEGRADED, "health check said: \x1b[31mred\x1b[0m [link=http://x]y[/link]"),
    ]
    out_console, out = console()
    print_result(out_console, run(cells))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "\x00" not in text
    assert "\ud800" not in text
    text.encode("utf-8")  # nothing the encoder of a UTF-8 stdout refuses
    assert "[bold]x[/bold]" in text  # shown as text, not applied as style
    assert "health check said: red [link=http://x]y[/link]" in text
    assert "degraded on 1 of 2 cells: health check said: red [link=http://x]y[/link]" in text
    assert "owned [bold]x[/bold] NUL? ? in evil_fn [evil] [testbed_sensor]" in text  # the group line


def test_control_twins_and_expected_control_outcomes_are_marked_and_not_grouped():
    cells = [
        cell("n", CellOutcome.INFRA_ERROR, "crashed, but its control twin failed too"),
        cell("n.control", CellOutcome.CRASHED, "panicked", NULL_DEREF, control_of="n"),
        cell(
            "hang-image",
            CellOutcome.HUNG,
            "no readiness",
            observed=CellOutcome.HUNG,
            expected_outcome=CellOutcome.HUNG,
        ),
    ]
    out_console, out = console()
    print_result(out_console, run(cells, RunVerdict.INCONCLUSIVE))
    text = out.getvalue()
    assert f"control twin of n: {NULL_DEREF}" in text
    assert "hung (expected)" in text
    groups = text[grouped_offset(text) :].splitlines()
    assert groups[1:3] == ["  infra_error on 1 of 2 cells: crashed, but its control twin failed too", "    n"]
    assert "verdict: inconclusive" in groups[3]


def test_live_lines_without_a_terminal_show_phases_as_safe_text():
    plan = RunPlan("m", "sensor", "1.1.0", {}, False, (build_plan(cell_id="n"),))
    out_console, out = console()
    with RunProgress(out_console, plan) as progress:
        progress(
            RunEvent(
                run_id="r1",
                sequence=1,
                at=0.0,
                kind=RunEventKind.CELL_CHANGED,
                cell_id="n",
                state=CellState.INSTALLING,
                phase="installing [bold]candidate\x1b[2J\nnow",
            )
        )
    (line,) = out.getvalue().splitlines()
    assert line.endswith("n                            installing   installing [bold]candidate now")
    assert "\x1b" not in line


def test_a_control_twin_gets_a_row_of_its_own_when_it_starts():
    """Twins are not in the plan: the CLI's event thread once died on the first one (KeyError)."""
    plan = RunPlan("m", "sensor", "1.1.0", {}, False, (build_plan(cell_id="n"),))
    out_console, out = console()
    with RunProgress(out_console, plan) as progress:
        progress(
            RunEvent(
                "r1", 1, 0.0, RunEventKind.CELL_CHANGED, cell_id="n~control", state=CellState.PROVISIONING
            )
        )
        table = progress.table()
    assert out.getvalue().split("]", 1)[1].split() == ["n~control", "provisioning"]
    assert table.row_count == 2
    kernels = [str(text) for text in table.columns[1].cells]
    assert kernels == ["6.1.0-56-amd64"] * 2  # the twin's kernel is its cell's
