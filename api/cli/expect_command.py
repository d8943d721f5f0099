"""``testbed expect RESULT --catalog FILE``: did a finished run catch the failures it is there to catch?

RESULT is what ``testbed gate --json`` printed (or the service's result of a run); the cells'
matrix coordinates come from the run's ``plan.json`` in its evidence directory (``--plan`` names
another). Exit codes: 0 every catalog entry was caught, 1 at least one was not, 3 bad input.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from api.cli.common import JsonOption, console, errors_as_exit_codes
from orchestrator.core.expectations import (
    FailureCheck,
    ObservedCell,
    check_catalog,
    observed_cells,
    parse_catalog,
)
from orchestrator.errors import ConfigurationError

EXIT_MISSED = 1


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{what} {path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{what} {path}: expected a JSON object")
    return data


def _plan_of(result: dict[str, Any], plan: Path | None) -> dict[str, Any]:
    if plan is None:
        evidence = result.get("evidence_dir")
        if not evidence:
            raise ConfigurationError(
                "the result names no evidence directory: give the run's plan with --plan"
            )
        plan = Path(evidence) / "plan.json"
    document = _read_json(plan, "plan")
    wrapped = document.get("plan")  # the run directory's plan.json wraps the plan
    return wrapped if isinstance(wrapped, dict) else document


def _cell_line(cell: ObservedCell) -> str:
    return f"    {cell.cell_id}: {cell.outcome} - {cell.evidence}"


def _print(checks: list[FailureCheck], result: dict[str, Any]) -> None:
    out = console()
    for check in checks:
        mark = Text("caught", style="bold green") if check.reproduced else Text("MISSED", style="bold red")
        out.print(Text.assemble(mark, f"  {check.failure.id}: {check.failure.title}"))
        for cell in check.caught_by:
            out.print(_cell_line(cell), highlight=False, markup=False)
        if not check.reproduced:
            wanted = " or ".join(str(o) for o in check.failure.outcomes)
            needs = f" with {check.failure.evidence!r}" if check.failure.evidence else ""
            out.print(f"    expected {wanted}{needs}; the cells it selects did:", highlight=False)
            for missed in check.missed_by:
                out.print(_cell_line(missed), highlight=False, markup=False)
            if not check.missed_by:
                out.print("    (no cell of the run matches its selector)", highlight=False)
    groups = result.get("groups") or []
    if groups:
        out.print(Text("\nfailures grouped across cells:", style="bold"))
        for group in groups:
            out.print(f"  {group['summary']}", highlight=False, markup=False)
            for cell_id in group["cells"]:
                out.print(f"    {cell_id}", highlight=False, markup=False)


def expect(
    result_file: Annotated[
        Path, typer.Argument(metavar="RESULT", help="The run's result (testbed gate --json).")
    ],
    catalog: Annotated[Path, typer.Option(help="The failures the run must catch (YAML).")],
    plan: Annotated[
        Path | None, typer.Option(help="The run's plan.json (default: in the result's evidence directory).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Per expected failure (e.g. each past incident), the cells of a finished run that caught it."""
    with errors_as_exit_codes():
        try:
            catalog_text = catalog.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"catalog {catalog}: {exc.strerror or exc}") from exc
        expected = parse_catalog(catalog_text, str(catalog))
        result = _read_json(result_file, "result")
        checks = check_catalog(expected, observed_cells(result, _plan_of(result, plan)))
    if json_output:
        document = {"run_id": result.get("run_id"), "failures": [check.as_dict() for check in checks]}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        _print(checks, result)
    if not all(check.reproduced for check in checks):
        raise typer.Exit(EXIT_MISSED)
