"""How runs are shown: cell coordinates and the matrix grid, the console tail (terminal-safe, crash
lines marked), durations. Pure functions, driven by tables."""

import pytest

from api.run_views import (
    Coordinates,
    console_tail,
    coordinates_from_id,
    coordinates_of,
    crash_summary,
    format_seconds,
    matrix_grid,
)
from orchestrator.core.outcomes import CellState
from orchestrator.store import CellRecord

pytestmark = pytest.mark.unit


def planned(
    cell_id: str, image: str, *, products=(), sensor=None, variant="as-shipped", control_of=None
) -> dict:
    return {
        "cell_id": cell_id,
        "image": {"name": image, "kernel": "6.1.0-56-amd64", "os_family": "linux"},
        "coinstalled": list(products),
        "sensor_version": sensor,
        "content_variant": variant,
        "control_of": control_of,
    }


@pytest.mark.parametrize(
    ("cell_id", "expected"),
    [
        ("debian12-kernel-n", Coordinates("debian12-kernel-n")),
        ("debian12-kernel-n+dlp", Coordinates("debian12-kernel-n", coinstalled=("dlp",))),
        ("img+dlp+av@1.1.0", Coordinates("img", coinstalled=("dlp", "av"), sensor_version="1.1.0")),
        ("img@1.0.0~zero-filled", Coordinates("img", sensor_version="1.0.0", content_variant="zero-filled")),
        ("img~control", Coordinates("img", control_of="img")),
        (
            "img+dlp~truncated-half~control",
            Coordinates(
                "img",
                coinstalled=("dlp",),
                content_variant="truncated-half",
                control_of="img+dlp~truncated-half",
            ),
        ),
    ],
)
def test_a_cell_id_reads_back_as_its_coordinates(cell_id, expected):
    assert coordinates_from_id(cell_id) == expected


@pytest.mark.parametrize(
    ("coordinates", "column"),
    [
        (Coordinates("img"), "no co-installed product"),
        (Coordinates("img", coinstalled=("dlp", "av")), "dlp+av"),
        (
            Coordinates("img", sensor_version="1.1.0", content_variant="zero-filled"),
            "no co-installed product · sensor 1.1.0 · content zero-filled",
        ),
        (Coordinates("img", coinstalled=("dlp",), control_of="img+dlp"), "dlp · control (no candidate)"),
    ],
)
def test_the_grid_column_names_every_dimension_but_the_image(coordinates, column):
    assert coordinates.column == column


def test_the_plan_wins_over_the_id_and_unplanned_cells_are_read_from_their_id():
    plan = {"cells": [planned("weird-id", "debian12-kernel-n", products=("dlp",), sensor="1.1.0")]}

    found = coordinates_of(plan, ["weird-id", "other+av"])

    assert found["weird-id"] == Coordinates(
        "debian12-kernel-n", kernel="6.1.0-56-amd64", coinstalled=("dlp",), sensor_version="1.1.0"
    )
    assert found["other+av"] == Coordinates("other", coinstalled=("av",))


def test_the_grid_has_a_row_per_image_and_a_column_per_other_combination():
    plan = {
        "cells": [
            planned("n", "n"),
            planned("n+dlp", "n", products=("dlp",)),
            planned("n1", "n1"),
            planned("n1+dlp", "n1", products=("dlp",)),
            planned("win11", "win11"),
        ]
    }
    records = [CellRecord("r", cell_id) for cell_id in ("n", "n+dlp", "n1", "n1+dlp", "win11", "n1~control")]

    grid = matrix_grid(plan, records)

    assert grid.columns == (
        "no co-installed product",
        "dlp",
        "no co-installed product · control (no candidate)",
    )
    assert grid.rows == (
        ("n", ("n", "n+dlp", None)),
        ("n1", ("n1", "n1+dlp", "n1~control")),
        ("win11", ("win11", None, None)),
    )


def test_an_empty_or_odd_plan_still_gives_a_grid_from_the_cells():
    grid = matrix_grid({"cells": "not a list"}, [CellRecord("r", "a", state=CellState.BOOTING)])

    assert grid.rows == (("a", ("a",)),)


CRASH = """[  120.934192] BUG: kernel NULL pointer dereference, address: 0000000000000010
[  120.939681] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  120.945105] RIP: 0010:tbs_match_template+0x43/0x140 [testbed_sensor]"""


def test_console_lines_are_terminal_safe_and_the_crash_excerpt_is_marked():
    text = (
        "\x1b[2J\x1b[1;31mred\x1b[0m text\r\n<script>alert(1)</script>\nbell\x07nul\x00\n"
        + CRASH
        + "\nafter\n"
    )

    lines = console_tail(text, crash_excerpt=CRASH)

    assert [line.text for line in lines[:3]] == ["red text", "<script>alert(1)</script>", "bell?nul?"]
    assert [line.crash for line in lines] == [False, False, False, True, True, True, False]
    assert all("\x1b" not in line.text for line in lines)


def test_without_crash_json_the_parser_finds_the_report_in_the_tail(fixtures_dir):
    text = (fixtures_dir / "console" / "sensor-zero-filled-install-panic-6.1.0-56.log").read_text(
        errors="replace"
    )

    lines = console_tail(text)

    marked = [line.text for line in lines if line.crash]
    assert any("BUG: kernel NULL pointer dereference" in line for line in marked)
    assert any("Kernel panic - not syncing" in line for line in marked)
    assert not any("login:" in line and "BUG" not in line for line in marked)


def test_the_tail_keeps_the_last_lines_only():
    lines = console_tail("\n".join(f"line {n}" for n in range(1000)), max_lines=3)

    assert [line.text for line in lines] == ["line 997", "line 998", "line 999"]


def test_the_crash_summary_keeps_shown_fields_on_one_safe_line():
    summary = crash_summary(
        {"title": "BUG: x\x1b[31m\nmore", "module": "m", "function": None, "excerpt": "..."}
    )

    assert summary == {"title": "BUG: x more", "module": "m"}
    assert crash_summary(None) == {}


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (-1, ""), (0.42, "0.4s"), (9.96, "10.0s"), (42.4, "42s"), (95.2, "1m35s"), (3725, "1h02m")],
)
def test_durations_read_like_a_person_says_them(seconds, shown):
    assert format_seconds(seconds) == shown
