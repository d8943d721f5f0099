"""What a person watching ``testbed gate`` sees: a live table on a terminal, one line per change elsewhere."""

import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.core.outcomes import CANDIDATE_FAILURES, CellOutcome, RunVerdict
from orchestrator.core.plan import RunPlan
from orchestrator.core.records import RunEvent, RunEventKind, RunResult

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


def outcome_text(outcome: CellOutcome | None) -> Text:
    if outcome is None:
        return Text("")
    style = "bold red" if outcome in CANDIDATE_FAILURES else _OUTCOME_STYLE.get(outcome, "")
    return Text(str(outcome), style=style)


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
            row = self._rows[event.cell_id]
            row.host = event.host or row.host
            row.state = str(event.state)
            row.phase = event.phase
            row.outcome = event.outcome
            row.started = row.started or time.monotonic()
            if event.outcome is not None:
                row.finished = row.finished or time.monotonic()
        if self._live is None:
            elapsed = time.monotonic() - self._started
            outcome = f" -> {event.outcome}" if event.outcome else ""
            self._console.print(
                f"[{elapsed:7.1f}s] {event.cell_id:<28} {row.state:<12} {row.phase}{outcome}", highlight=False
            )

    def table(self) -> Table:
        table = Table(title=f"cells ({time.monotonic() - self._started:.0f}s)", expand=False)
        for column in ("cell", "kernel", "host", "state", "phase", "outcome", "time"):
            table.add_column(column)
        with self._lock:
            for cell_id, row in self._rows.items():
                end = row.finished or time.monotonic()
                seconds = f"{end - row.started:.0f}s" if row.started else ""
                table.add_row(
                    cell_id, row.kernel, row.host, row.state, row.phase, outcome_text(row.outcome), seconds
                )
        return table


def print_result(console: Console, result: RunResult) -> None:
    table = Table(title=f"run {result.run_id}: {result.candidate_name} {result.candidate_version}")
    for column in ("cell", "kernel", "outcome", "why", "evidence"):
        table.add_column(column, overflow="fold")
    for cell in result.cells:
        # Text, not markup: "[testbed_sensor]" in a crash title is a module name, not a style tag.
        why = Text(cell.crash_title or cell.reason)
        table.add_row(
            cell.cell_id, cell.kernel, outcome_text(cell.outcome), why, Text(cell.evidence_dir or "")
        )
    console.print(table)
    console.print(Text(f"verdict: {result.verdict} — {result.summary}", style=_VERDICT_STYLE[result.verdict]))
    console.print(Text(f"evidence: {result.evidence_dir}/run.json"))
