"""What a person watching ``testbed gate`` sees: a live table on a terminal, one line per change elsewhere,
then the result: a table of cells and the failures grouped (one line per distinct failure, its cells).

Phases, reasons and crash titles can carry text a guest printed: each goes through
``orchestrator.core.sanitize`` and reaches rich as ``Text``, never as markup ("[testbed_sensor]" in a
title is a module name, not a style tag).
"""

import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.core.grouping import describe, group_failures, verdict_cells
from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, RunVerdict
from orchestrator.core.plan import RunPlan
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.core.sanitize import for_terminal, one_line

_OUTCOME_STYLE = {
    CellOutcome.PASSED: "bold green",
    CellOutcome.INFRA_ERROR: "bold yellow",
    CellOutcome.CANCELED: "dim",
}
_VERDICT_STYLE = {
    RunVerdict.PASSED: "bold green",
    RunVerdict.FAILED: "bold red",
    RunVerdict.INCONCLUSIVE: "bold yellow",
}


def _style(outcome: CellOutcome) -> str:
    return "bold red" if outcome in CANDIDATE_FAILURES else _OUTCOME_STYLE.get(outcome, "")


def outcome_text(outcome: CellOutcome | None) -> Text:
    if outcome is None:
        return Text("")
    return Text(str(outcome), style=_style(outcome))


@dataclass
class _Row:
    kernel: str
    host: str = ""
    state: str = "pending"
    phase: str = ""
    outcome: CellOutcome | None = None
    started: float | None = None
    finished: float | None = None


class RunProgress:
    """Receives run events (from any thread) and shows them."""

    def __init__(self, console: Console, plan: RunPlan) -> None:
        self._console = console
        self._rows = {cell.cell_id: _Row(kernel=cell.image.kernel) for cell in plan.cells}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> "RunProgress":
        if self._console.is_terminal:
            self._live = Live(get_renderable=self.table, console=self._console, refresh_per_second=2)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def __call__(self, event: RunEvent) -> None:
        if event.kind is not RunEventKind.CELL_CHANGED or event.cell_id is None:
            return
        with self._lock:
            row = self._row(event.cell_id)
            row.host = event.host or row.host
            row.state = str(event.state)
            row.phase = one_line(event.phase, 120)
            row.outcome = event.outcome
            row.started = row.started or time.monotonic()
            if event.outcome is not None:
                row.finished = row.finished or time.monotonic()
        if self._live is None:
            elapsed = time.monotonic() - self._started
            outcome = f" -> {event.outcome}" if event.outcome else ""
            line = f"[{elapsed:7.1f}s] {event.cell_id:<28} {row.state:<12} {row.phase}{outcome}"
            self._console.print(Text(line), highlight=False)

    def _row(self, cell_id: str) -> _Row:
        """A planned cell's row; a control twin (run only when its cell failed) gets one when it
        starts, with its cell's kernel (its id is the cell's, then "~control")."""
        row = self._rows.get(cell_id)
        if row is None:
            twin_of = next(
                (known for cell, known in self._rows.items() if cell_id.startswith(f"{cell}~")), None
            )
            row = self._rows[cell_id] = _Row(kernel=twin_of.kernel if twin_of else "")
        return row

    def table(self) -> Table:
        table = Table(title=Text(f"cells ({time.monotonic() - self._started:.0f}s)"), expand=False)
        for column in ("cell", "kernel", "host", "state", "phase", "outcome", "time"):
            table.add_column(column)
        with self._lock:
            for cell_id, row in self._rows.items():
                end = row.finished or time.monotonic()
                seconds = f"{end - row.started:.0f}s" if row.started else ""
                cells = (cell_id, row.kernel, row.host, row.state, row.phase)
                table.add_row(*(Text(text) for text in cells), outcome_text(row.outcome), Text(seconds))
        return table


def _why(cell: CellResult) -> str:
    why = one_line(cell.crash_title or cell.reason)
    return why if cell.control_of is None else f"control twin of {cell.control_of}: {why}"


def _result_outcome(cell: CellResult) -> Text:
    if cell.as_expected:  # a control image doing what it is there to do counts as a pass
        return Text(f"{cell.outcome} (expected)", style=_OUTCOME_STYLE[CellOutcome.PASSED])
    return outcome_text(cell.outcome)


def print_result(console: Console, result: RunResult) -> None:
    title = f"run {result.run_id}: {result.candidate_name} {for_terminal(result.candidate_version)}"
    table = Table(title=Text(title))
    for column in ("cell", "kernel", "outcome", "why", "evidence"):
        table.add_column(column, overflow="fold")
    for cell in result.cells:
        table.add_row(
            Text(cell.cell_id),
            Text(cell.kernel),
            _result_outcome(cell),
            Text(_why(cell)),
            Text(cell.evidence_dir or ""),
        )
    console.print(table)
    print_groups(console, result.cells)
    console.print(
        Text(
            f"verdict: {result.verdict} — {for_terminal(result.summary)}",
            style=_VERDICT_STYLE[result.verdict],
        )
    )
    console.print(Text(f"evidence: {result.evidence_dir}/run.json"))


def print_groups(console: Console, cells: list[CellResult]) -> None:
    """The failures grouped, biggest first: what went wrong, on how many cells, and which."""
    groups = group_failures(cells)
    if not groups:
        return
    total = len(verdict_cells(cells))
    console.print(Text("failures, grouped:", style="bold"))
    for group in groups:
        console.print(Text(f"  {one_line(describe(group, total), 500)}", style=_style(group.outcome)))
        console.print(Text(f"    {', '.join(group.cells)}"), overflow="fold")
