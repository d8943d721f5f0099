"""What every ``testbed`` command shares: settings, consoles, and testbed errors as exit codes."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from orchestrator.config import Settings, load_settings
from orchestrator.core.outcomes import RunVerdict
from orchestrator.core.verdict import EXIT_BAD_INPUT, EXIT_CODES
from orchestrator.errors import ConfigurationError, TestbedError

REPO_ROOT = Path(__file__).resolve().parents[2]

state: dict[str, Any] = {"config": None}
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (else TESTBED_CONFIG).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def console(*, stderr: bool = False) -> Console:
    """Logs of CI jobs are wide: do not wrap crash titles at 80 columns there."""
    made = Console(stderr=stderr)
    return made if made.is_terminal else Console(stderr=stderr, width=200)


def settings() -> Settings:
    return load_settings(state["config"])


@contextmanager
def errors_as_exit_codes() -> Iterator[None]:
    """Testbed errors become a one-paragraph message and the documented exit code."""
    try:
        yield
    except ConfigurationError as exc:
        err.print(Text("bad input: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    except TestbedError as exc:
        err.print(Text(f"inconclusive ({exc.blame}): ", style="bold yellow") + Text(str(exc)))
        raise typer.Exit(EXIT_CODES[RunVerdict.INCONCLUSIVE]) from exc
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        # A bug of ours says nothing about the candidate: inconclusive (2), never "failed" (1).
        message = Text(f"{type(exc).__name__}: {exc}")
        err.print(Text("inconclusive (internal error): ", style="bold yellow") + message)
        raise typer.Exit(EXIT_CODES[RunVerdict.INCONCLUSIVE]) from exc
