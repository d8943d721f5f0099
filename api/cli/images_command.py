"""``testbed images``: build golden images and list the catalog."""

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.cli.common import REPO_ROOT, JsonOption, err, errors_as_exit_codes, settings

IMAGE_DEFINITION_DIRS = [REPO_ROOT / "images" / "linux", REPO_ROOT / "images" / "controls"]
WINDOWS_DIR = REPO_ROOT / "images" / "windows"

images_app = typer.Typer(help="Golden images: build and list.", no_args_is_help=True)


@images_app.command("build")
def images_build(
    names: Annotated[list[str] | None, typer.Argument(help="Images to build (default: all defined).")] = None,
    iso: Annotated[
        Path | None, typer.Option("--iso", help="Windows installation ISO for the one Windows image named.")
    ] = None,
    iso_sha256: Annotated[str | None, typer.Option("--iso-sha256", help="sha256 of the --iso file.")] = None,
) -> None:
    """Build golden images that are missing or whose definition changed (cached by digest).

    Windows images are built only when named, from your ISO: ``images build win11-24h2 --iso
    PATH --iso-sha256 HEX`` (see images/windows/README.md).
    """
    from orchestrator.errors import ConfigurationError  # noqa: PLC0415
    from orchestrator.images.build import build_images  # noqa: PLC0415
    from orchestrator.images.definition import WindowsImage, load_definitions  # noqa: PLC0415
    from orchestrator.images.windows_builder import WindowsMedia  # noqa: PLC0415

    with errors_as_exit_codes():
        configured = settings()
        definitions = load_definitions([*IMAGE_DEFINITION_DIRS, WINDOWS_DIR])
        windows = sorted(name for name, item in definitions.items() if isinstance(item, WindowsImage))
        if not names:
            # Each Windows image needs its own ISO: building "all" means all the others.
            names = [name for name in definitions if name not in windows]
        media: dict[str, WindowsMedia] = {}
        if (iso is None) != (iso_sha256 is None):
            raise ConfigurationError("--iso and --iso-sha256 go together")
        if iso is not None and iso_sha256 is not None:
            named_windows = [name for name in names if name in windows]
            if len(named_windows) != 1:
                raise ConfigurationError(
                    f"--iso: name exactly one Windows image to build from it (defined: {', '.join(windows)})"
                )
            media[named_windows[0]] = WindowsMedia(iso, iso_sha256)
        started = time.monotonic()
        progress: Callable[[str], None] = lambda message: err.print(  # noqa: E731
            f"[dim]{time.monotonic() - started:6.0f}s[/] {message}", highlight=False
        )
        results = build_images(
            definitions,
            configured.images_dir,
            configured.debian_mirror,
            progress,
            names=names,
            overlay_dirs=tuple(configured.pool_dir(host) for host in configured.hosts),
            windows_media=media,
            windows_dir=WINDOWS_DIR,
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

    with errors_as_exit_codes():
        records = ImageCatalog(settings().images_dir).records()
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
