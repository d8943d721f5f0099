"""How runs are shown: where each cell sits in the matrix grid, and a console tail fit for a page.

Pure functions over records and text (no I/O): the API's schemas and the status page both use
them, and the unit tests drive them with tables.

Grid: one row per image; one column per combination of the other dimensions (co-installed
products, sensor version, content variant, control twin), read from the run's plan — or, for a
cell the plan does not list, from its id (``image+product...@sensor~variant``).

Console: guest text is untrusted. Each line is made terminal-safe (``core.sanitize``: escape
sequences removed, other control characters shown as '?'); HTML escaping is the templates' job
(autoescaping). Lines that belong to a kernel report are marked so the page can highlight them.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.core.crash import find_reports
from orchestrator.core.sanitize import for_terminal, one_line
from orchestrator.store import CellRecord

AS_SHIPPED = "as-shipped"


@dataclass(frozen=True)
class Coordinates:
    """Where a cell sits in the matrix."""

    image: str
    kernel: str = ""
    coinstalled: tuple[str, ...] = ()
    sensor_version: str = ""
    content_variant: str = AS_SHIPPED
    control_of: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {
            "image": self.image,
            "coinstalled": "+".join(self.coinstalled) or "none",
            "sensor_version": self.sensor_version,
            "content_variant": self.content_variant,
        }

    @property
    def column(self) -> str:
        """The grid column: every dimension but the image, in words."""
        parts = ["+".join(self.coinstalled) if self.coinstalled else "no co-installed product"]
        if self.sensor_version:
            parts.append(f"sensor {self.sensor_version}")
        if self.content_variant != AS_SHIPPED:
            parts.append(f"content {self.content_variant}")
        if self.control_of is not None:
            parts.append("control (no candidate)")
        return " · ".join(parts)


def coordinates_from_id(cell_id: str) -> Coordinates:
    """``image+product...@sensor~variant`` (the matrix's cell naming) read back."""
    head, *variants = cell_id.split("~")
    head, _, sensor_version = head.partition("@")
    image, *products = head.split("+")
    control = variants[-1] == "control" if variants else False
    if control:
        variants = variants[:-1]
    return Coordinates(
        image=image,
        coinstalled=tuple(products),
        sensor_version=sensor_version,
        content_variant="~".join(variants) or AS_SHIPPED,
        control_of=cell_id.removesuffix("~control") if control else None,
    )


def planned_coordinates(plan: Mapping[str, Any]) -> dict[str, Coordinates]:
    """Each planned cell's coordinates, in the plan's order."""
    cells = plan.get("cells")
    found: dict[str, Coordinates] = {}
    if not isinstance(cells, list):
        return found
    for cell in cells:
        if not isinstance(cell, Mapping) or not cell.get("cell_id"):
            continue
        cell_id = str(cell["cell_id"])
        raw_image = cell.get("image")
        image: Mapping[str, Any] = raw_image if isinstance(raw_image, Mapping) else {}
        found[cell_id] = Coordinates(
            image=str(image.get("name") or coordinates_from_id(cell_id).image),
            kernel=str(image.get("kernel") or ""),
            coinstalled=tuple(str(p) for p in cell.get("coinstalled") or ()),
            sensor_version=str(cell.get("sensor_version") or ""),
            content_variant=str(cell.get("content_variant") or AS_SHIPPED),
            control_of=str(cell["control_of"]) if cell.get("control_of") else None,
        )
    return found


def coordinates_of(plan: Mapping[str, Any], cell_ids: Iterable[str]) -> dict[str, Coordinates]:
    """Coordinates of these cells: from the plan where it lists them, else from their ids."""
    planned = planned_coordinates(plan)
    return {cell_id: planned.get(cell_id) or coordinates_from_id(cell_id) for cell_id in cell_ids}


@dataclass(frozen=True)
class Grid:
    """The matrix as a table: ``rows`` are (image, one cell id or None per column)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str | None, ...]], ...]


def matrix_grid(plan: Mapping[str, Any], cells: Sequence[CellRecord]) -> Grid:
    """Rows and columns in the order they first appear in the plan (then in the cells)."""
    order = list(planned_coordinates(plan))
    order += [cell.cell_id for cell in cells if cell.cell_id not in order]
    where = coordinates_of(plan, order)
    images: list[str] = []
    columns: list[str] = []
    placed: dict[tuple[str, str], str] = {}
    for cell_id in order:
        coordinates = where[cell_id]
        if coordinates.image not in images:
            images.append(coordinates.image)
        if coordinates.column not in columns:
            columns.append(coordinates.column)
        placed[(coordinates.image, coordinates.column)] = cell_id
    rows = tuple((image, tuple(placed.get((image, column)) for column in columns)) for image in images)
    return Grid(tuple(columns), rows)


# -- console -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleLine:
    """One console line as a page shows it."""

    text: str  # terminal-safe; still to be HTML-escaped (the templates autoescape)
    crash: bool  # part of a kernel report: highlighted


def _key(line: str) -> str:
    return " ".join(for_terminal(line).split())


def console_tail(text: str, crash_excerpt: str | None = None, max_lines: int = 400) -> list[ConsoleLine]:
    """The last ``max_lines`` lines, crash lines marked.

    Crash lines are those of ``crash_excerpt`` (the cell's crash.json); without one, those of any
    kernel report the core's parser finds in the tail itself.
    """
    lines = text.splitlines()[-max_lines:]
    if crash_excerpt:
        excerpts: Iterable[str] = crash_excerpt.splitlines()
    else:
        excerpts = [line for report in find_reports("\n".join(lines)) for line in report.excerpt]
    marked = {_key(line) for line in excerpts} - {""}
    return [ConsoleLine(for_terminal(line), _key(line) in marked) for line in lines]


def crash_summary(crash: Mapping[str, Any] | None) -> dict[str, str]:
    """The fields of a crash.json worth a line each on the page, terminal-safe."""
    if not crash:
        return {}
    fields = ("title", "kind", "module", "function", "panic_reason", "first_line", "tainted")
    return {name: one_line(str(crash[name])) for name in fields if crash.get(name) not in (None, "")}


def format_seconds(seconds: float | None) -> str:
    """``95.2`` -> ``1m35s``; '' for none."""
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
