"""A catalog of known failures checked against a finished run: which cells caught each one.

The pure check first (selection, outcome, evidence, control twins never counting), then
``testbed expect`` on files shaped like a real run's result and plan.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from api.cli.expect_command import expect
from orchestrator.core.expectations import (
    ObservedCell,
    check_catalog,
    observed_cells,
    parse_catalog,
)
from orchestrator.core.outcomes import CellOutcome
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

N, N1 = "debian12-kernel-n-fast", "debian12-kernel-n1"
NULL_DEREF = "BUG: kernel NULL pointer dereference in tbs_apply_kernel_profile [testbed_sensor]"
EXEC_OOPS = "BUG: unable to handle page fault for address: ffff in tbs_match_exec [testbed_sensor]"

CATALOG = """
matrix: incidents
failures:
  - id: 2024-04
    title: the N-1 kernel nobody tested
    cells: {image: debian12-kernel-n1, sensor_version: 1.1.0}
    outcomes: [crashed]
    evidence: tbs_apply_kernel_profile
  - id: "2010"
    title: booted, lost the network
    cells: {coinstalled: [netguard]}
    outcomes: [degraded]
"""


def cell(
    cell_id: str,
    outcome: CellOutcome,
    *,
    image: str = N,
    products: tuple[str, ...] = (),
    sensor: str | None = "1.1.0",
    title: str | None = None,
    reason: str = "",
    control_of: str | None = None,
) -> ObservedCell:
    return ObservedCell(cell_id, image, products, sensor, "as-shipped", outcome, reason, title, control_of)


def test_a_failure_is_caught_by_the_selected_cells_with_its_outcome_and_evidence():
    cells = [
        cell("n1", CellOutcome.CRASHED, image=N1, title=NULL_DEREF),
        cell("n", CellOutcome.CRASHED, title=EXEC_OOPS),  # another crash, on another image
        cell("n1-old", CellOutcome.PASSED, image=N1, sensor="1.0.0"),
        cell("net", CellOutcome.DEGRADED, products=("netguard",), reason="SSH lost; the guest agent answers"),
    ]

    checks = check_catalog(parse_catalog(CATALOG), cells)

    assert [(c.failure.id, [x.cell_id for x in c.caught_by], c.reproduced) for c in checks] == [
        ("2024-04", ["n1"], True),
        ("2010", ["net"], True),
    ]
    assert checks[1].as_dict()["caught_by"] == [
        {"cell_id": "net", "outcome": "degraded", "evidence": "SSH lost; the guest agent answers"}
    ]


@pytest.mark.parametrize(
    ("observed", "why"),
    [
        (cell("n1", CellOutcome.PASSED, image=N1), "passed"),
        (cell("n1", CellOutcome.CRASHED, image=N1, title=EXEC_OOPS), "another crash"),
        (
            cell("n1", CellOutcome.INFRA_ERROR, image=N1, reason="tbs_apply_kernel_profile"),
            "not an outcome named",
        ),
    ],
)
def test_a_selected_cell_doing_something_else_is_a_miss(observed: ObservedCell, why: str):
    check = check_catalog(parse_catalog(CATALOG), [observed])[0]

    assert not check.reproduced, why
    assert check.missed_by == (observed,)


def test_a_control_twin_never_catches_a_failure():
    twin = cell("net~control", CellOutcome.DEGRADED, products=("netguard",), control_of="net")

    check = check_catalog(parse_catalog(CATALOG), [twin])[1]

    assert not check.reproduced
    assert check.missed_by == ()  # a twin is evidence for its cell, not a cell of the matrix


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("failures: []", "failures"),
        ("failures: [{id: a, title: t, cells: {}, outcomes: [passed]}]", "cannot be caught by a pass"),
        ("failures: [{id: a, title: t, cells: {}, outcomes: [exploded]}]", "failures.0.outcomes.0"),
        ("failures: [{id: a, title: t, cells: {image: x, colour: red}, outcomes: [hung]}]", "colour"),
        (
            "failures: [{id: a, title: t, cells: {}, outcomes: [hung]},"
            " {id: a, title: u, cells: {}, outcomes: [hung]}]",
            "ids listed more than once: a",
        ),
        ("- just a list", "expected a mapping"),
        ("failures: [", "not valid YAML"),
    ],
)
def test_a_bad_catalog_is_refused_naming_what_is_wrong(text: str, names: str):
    with pytest.raises(ConfigurationError, match="catalog") as raised:
        parse_catalog(text, "catalog.yaml")

    assert names in str(raised.value)


def plan_cell(cell_id: str, image: str, products: list[str], sensor: str) -> dict[str, Any]:
    return {
        "cell_id": cell_id,
        "image": {"name": image, "os_family": "linux"},
        "coinstalled": products,
        "sensor_version": sensor,
        "content_variant": "as-shipped",
    }


def result_cell(cell_id: str, outcome: str, *, title: str | None = None, control_of: str | None = None):
    crash = {"title": title, "module": "testbed_sensor"} if title else None
    return {"cell_id": cell_id, "outcome": outcome, "reason": "r", "crash": crash, "control_of": control_of}


def write_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = {
        "cells": [
            plan_cell("n1_1.1.0", N1, [], "1.1.0"),
            plan_cell("n+netguard_1.1.0", N, ["netguard"], "1.1.0"),
        ]
    }
    (run_dir / "plan.json").write_text(json.dumps({"plan": plan, "images": {}}))
    result = {
        "run_id": "r1",
        "evidence_dir": str(run_dir),
        "cells": [
            result_cell("n1_1.1.0", "crashed", title=NULL_DEREF),
            result_cell("n+netguard_1.1.0", "passed"),
            result_cell("n1_1.1.0~control", "passed", control_of="n1_1.1.0"),
        ],
        "groups": [
            {"summary": f"crashed on 1 of 2 cells: {NULL_DEREF}", "cells": ["n1_1.1.0"]},
        ],
    }
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    return path


def test_the_run_is_joined_with_its_plan_twins_sit_where_their_cell_sits(tmp_path: Path):
    result = json.loads(write_run(tmp_path).read_text())
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())["plan"]

    cells = observed_cells(result, plan)

    assert [(c.cell_id, c.image, c.coinstalled, c.control_of) for c in cells] == [
        ("n1_1.1.0", N1, (), None),
        ("n+netguard_1.1.0", N, ("netguard",), None),
        ("n1_1.1.0~control", N1, (), "n1_1.1.0"),
    ]
    with pytest.raises(ConfigurationError, match="'stray' of the result is not in the run's plan"):
        observed_cells({"cells": [result_cell("stray", "passed")]}, plan)


def run_cli(*args: str):
    app = typer.Typer()
    app.command()(expect)
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_the_command_names_per_failure_the_cells_that_caught_it_and_exits_1_on_a_miss(tmp_path: Path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)

    printed = run_cli(write_run(tmp_path), "--catalog", catalog)

    assert printed.exit_code == 1, printed.output  # 2010 was missed: the netguard cell passed
    lines = printed.output.splitlines()
    assert "caught  2024-04: the N-1 kernel nobody tested" in lines
    assert f"    n1_1.1.0: crashed - {NULL_DEREF}" in lines
    assert "MISSED  2010: booted, lost the network" in lines
    assert "    n+netguard_1.1.0: passed - r" in lines
    assert f"  crashed on 1 of 2 cells: {NULL_DEREF}" in lines


def test_the_command_exits_0_when_everything_was_caught_and_speaks_json(tmp_path: Path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG.split('  - id: "2010"', maxsplit=1)[0])

    printed = run_cli(write_run(tmp_path), "--catalog", catalog, "--json")

    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.output)
    assert document["run_id"] == "r1"
    assert [(f["id"], f["reproduced"]) for f in document["failures"]] == [("2024-04", True)]


def test_the_command_refuses_unreadable_inputs_with_exit_3(tmp_path: Path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    not_json = tmp_path / "result.json"
    not_json.write_text("{")

    assert run_cli(tmp_path / "missing.json", "--catalog", catalog).exit_code == 3
    printed = run_cli(not_json, "--catalog", catalog)
    assert printed.exit_code == 3
    assert "not JSON" in printed.output
    no_evidence = tmp_path / "bare.json"
    no_evidence.write_text(json.dumps({"cells": []}))
    assert "give the run's plan with --plan" in run_cli(no_evidence, "--catalog", catalog).output
