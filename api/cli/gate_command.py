"""``testbed gate``: run a matrix against a candidate on this machine's hosts, without a server."""

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOption, console, errors_as_exit_codes, settings
from api.cli.junit import junit_xml
from api.cli.progress import RunProgress, print_result
from orchestrator.core.matrix import plan_as_yaml
from orchestrator.core.verdict import EXIT_CODES


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def gate(
    matrix: Annotated[Path, typer.Option(help="Matrix YAML file.")],
    candidate: Annotated[Path, typer.Option(help="Candidate directory (or its candidate.yaml).")],
    json_output: JsonOption = False,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the plan; start nothing.")
    ] = False,
) -> None:
    """Run a matrix against a candidate on the configured libvirt hosts, without a server."""
    from orchestrator.engine.gate import prepare_gate, run_gate  # noqa: PLC0415 - libvirt loads only when used

    with errors_as_exit_codes():
        configured = settings()
        prepared = prepare_gate(configured, matrix, candidate)
        if dry_run:
            sys.stdout.write(
                json.dumps(prepared.plan.as_dict(), indent=2) + "\n"
                if json_output
                else plan_as_yaml(prepared.plan)
            )
            return
        out = console(stderr=json_output)
        out.print(
            f"gate: {prepared.plan.candidate_name} {prepared.plan.candidate_version} on "
            f"{len(prepared.plan.cells)} cell(s) of matrix {prepared.plan.matrix_name}",
            highlight=False,
        )
        # A CI job being stopped sends SIGTERM: treat it like Ctrl-C, so every cell still keeps its
        # evidence and tears its domain down before the process ends.
        signal.signal(signal.SIGTERM, _interrupt)
        with RunProgress(out, prepared.plan) as progress:
            result = run_gate(configured, prepared, progress)
        if junit is not None:
            junit.write_text(junit_xml(result))
        if json_output:
            sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
        else:
            print_result(out, result)
    raise typer.Exit(EXIT_CODES[result.verdict])
