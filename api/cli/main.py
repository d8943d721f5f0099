"""``testbed``: run a gate locally, build golden images, look at hosts.

Exit codes (also for CI): 0 passed, 1 failed (the candidate caused a failure), 2 inconclusive
(the testbed could not answer), 3 bad input (nothing was started).
"""

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from api.cli.junit import junit_xml
from api.cli.progress import RunProgress, print_result
from orchestrator.config import Settings, load_settings
from orchestrator.core.matrix import plan_as_yaml
from orchestrator.core.outcomes import RunVerdict
from orchestrator.core.verdict import EXIT_BAD_INPUT, EXIT_CODES
from orchestrator.errors import ConfigurationError, TestbedError

app = typer.Typer(
    help="Endpoint Testbed: a pre-release gate for endpoint security sensors.", no_args_is_help=True
)
images_app = typer.Typer(help="Golden images: build and list.", no_args_is_help=True)
app.add_typer(images_app, name="images")

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_DEFINITION_DIRS = [REPO_ROOT / "images" / "linux", REPO_ROOT / "images" / "controls"]

_state: dict[str, Any] = {"config": None}
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (else TESTBED_CONFIG).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _console(*, stderr: bool = False) -> Console:
    """Logs of CI jobs are wide: do not wrap crash titles at 80 columns there."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=200)


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.callback()
def main(config: ConfigOption = None) -> None:
    _state["config"] = config


def _settings() -> Settings:
    return load_settings(_state["config"])


@contextmanager
def _errors_as_exit_codes() -> Iterator[None]:
    """Testbed errors become a one-paragraph message and the documented exit code."""
    try:
        yield
    except ConfigurationError as exc:
        err.print(Text("bad input: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    except TestbedError as exc:
        err.print(Text(f"inconclusive ({exc.blame}): ", style="bold yellow") + Text(str(exc)))
        raise typer.Exit(EXIT_CODES[RunVerdict.INCONCLUSIVE]) from exc


@app.command()
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

    with _errors_as_exit_codes():
        settings = _settings()
        prepared = prepare_gate(settings, matrix, candidate)
        if dry_run:
            sys.stdout.write(
                json.dumps(prepared.plan.as_dict(), indent=2) + "\n"
                if json_output
                else plan_as_yaml(prepared.plan)
            )
            return
        console = _console(stderr=json_output)
        console.print(
            f"gate: {prepared.plan.candidate_name} {prepared.plan.candidate_version} on "
            f"{len(prepared.plan.cells)} cell(s) of matrix {prepared.plan.matrix_name}",
            highlight=False,
        )
        # A CI job being stopped sends SIGTERM: treat it like Ctrl-C, so every cell still keeps its
        # evidence and tears its domain down before the process ends.
        signal.signal(signal.SIGTERM, _interrupt)
        with RunProgress(console, prepared.plan) as progress:
            result = run_gate(settings, prepared, progress)
        if junit is not None:
            junit.write_text(junit_xml(result))
        if json_output:
            sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
        else:
            print_result(console, result)
    raise typer.Exit(EXIT_CODES[result.verdict])


@images_app.command("build")
def images_build(
    names: Annotated[list[str] | None, typer.Argument(help="Images to build (default: all defined).")] = None,
) -> None:
    """Build golden images that are missing or whose definition changed (cached by digest)."""
    from orchestrator.images.build import build_images  # noqa: PLC0415
    from orchestrator.images.definition import load_definitions  # noqa: PLC0415

    with _errors_as_exit_codes():
        settings = _settings()
        definitions = load_definitions(IMAGE_DEFINITION_DIRS)
        started = time.monotonic()
        progress: Callable[[str], None] = lambda message: err.print(  # noqa: E731
            f"[dim]{time.monotonic() - started:6.0f}s[/] {message}", highlight=False
        )
        results = build_images(
            definitions,
            settings.images_dir,
            settings.debian_mirror,
            progress,
            names=names or None,
            overlay_dirs=tuple(settings.pool_dir(host) for host in settings.hosts),
        )
        built = [r.record.name for r in results if r.built]
        cached = [r.record.name for r in results if not r.built]
        if built:
            err.print(f"built: {', '.join(built)}", highlight=False)
        if cached and not built:
            err.print(f"images up to date: {', '.join(cached)}", highlight=False)


@images_app.command("list")
def images_list(json_output: JsonOption = False) -> None:
    """The catalog of built images."""
    from orchestrator.images.catalog import ImageCatalog  # noqa: PLC0415

    with _errors_as_exit_codes():
        records = ImageCatalog(_settings().images_dir).records()
    if json_output:
        sys.stdout.write(
            json.dumps({n: r.model_dump(mode="json") for n, r in records.items()}, indent=2) + "\n"
        )
        return
    table = Table(title="golden images")
    for column in ("name", "family", "version", "kernel", "digest", "size", "files"):
        table.add_column(column)
    for record in records.values():
        table.add_row(
            record.name,
            record.os_family,
            record.os_version,
            record.kernel,
            record.digest[:12],
            f"{record.disk_bytes / 2**20:.0f} MiB",
            "ok" if record.files_present() else "missing",
        )
    Console().print(table)


@app.command()
def hosts(json_output: JsonOption = False) -> None:
    """The configured libvirt hosts: reachable?, accelerator, capacity, testbed domains present."""
    from orchestrator.adapters.libvirt_host import LibvirtHost  # noqa: PLC0415

    rows = []
    with _errors_as_exit_codes():
        for config in _settings().hosts:
            host = LibvirtHost(config)
            row: dict[str, Any] = {"name": config.name, "uri": config.uri}
            try:
                host.connect()
                row.update(
                    reachable=True,
                    domain_type=host.domain_type(),
                    max_cells=host.max_cells(),
                    free_memory_mib=host.free_memory_mib(),
                    testbed_domains=host.testbed_domains(),
                )
            except TestbedError as exc:
                row.update(reachable=False, problem=str(exc))
            finally:
                host.close()
            rows.append(row)
    if json_output:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="libvirt hosts")
    for column in ("name", "uri", "reachable", "accel", "max cells", "free MiB", "testbed domains"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["uri"],
            "yes" if row["reachable"] else f"no: {row.get('problem', '')}",
            "kvm" if row.get("domain_type") == "kvm" else "tcg" if row.get("reachable") else "",
            str(row.get("max_cells", "")),
            str(row.get("free_memory_mib", "")),
            ", ".join(row.get("testbed_domains", [])) or "none",
        )
    Console().print(table)
