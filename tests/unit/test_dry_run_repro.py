"""testbed repro, without booting: what it writes for a recorded cell, and each refusal when the
exact cell cannot be had again (run, cell, image digest, candidate, content variant)."""

import hashlib
import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from api.cli.main import app
from api.cli.repro_command import (
    cell_plan_from_dict,
    exact_image,
    read_run,
    repro_summary,
    write_repro,
)
from orchestrator.adapters.domain_xml import domain_name
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunResult
from orchestrator.core.verdict import EXIT_BAD_INPUT
from orchestrator.engine.gate import prepare_gate, write_run_plan
from orchestrator.errors import ConfigurationError
from orchestrator.images.catalog import ImageCatalog
from tests.unit.test_domain_xml import assert_valid
from tests.unit.test_dry_run import testbed  # noqa: F401 - the fixture: a TCG host, both families' images

pytestmark = pytest.mark.unit

RUN_ID = "20261125-235317-6cbe"
IMAGE = "debian12-kernel-n"
CELL = "debian12-kernel-n~zero-filled"
TITLE = (
    "BUG: kernel NULL pointer dereference, address: 0000000000000010 in tbs_match_template [testbed_sensor]"
)
ZERO_FILLED_MATRIX = """
name: zero
images: [debian12-kernel-n]
reboots: 1
content_variants: [zero-filled]
timeouts: {ready: 420, stability: 10, install: 600, soak: 30}
"""


@pytest.fixture
def finished_run(testbed, tmp_path):  # noqa: F811 - the imported fixture
    """A run of the Linux cell with zero-filled content, recorded as the engine records it."""
    settings, _, candidate, config = testbed
    matrix = tmp_path / "zero.yaml"
    matrix.write_text(ZERO_FILLED_MATRIX)
    prepared = prepare_gate(settings, matrix, candidate)
    run_dir = settings.runs_dir / RUN_ID
    run_dir.mkdir(parents=True)
    write_run_plan(run_dir, prepared)
    cell = {
        "cell_id": CELL,
        "outcome": "crashed",
        "reason": "the hypervisor reported a guest crash (panicked)",
    }
    (run_dir / "run.json").write_text(
        json.dumps({"status": "finished", "cells": [{**cell, "crash": {"title": TITLE}}]})
    )
    return settings, prepared, candidate, config


def test_the_cells_plan_comes_back_as_the_run_had_it(finished_run):
    _, prepared, _, _ = finished_run
    (original,) = prepared.plan.cells
    assert original.content_variant == "zero-filled" and original.content_digests
    assert cell_plan_from_dict(prepared.plan.as_dict()["cells"][0]) == original


def test_what_a_repro_writes(finished_run, tmp_path):
    settings, _, candidate, _ = finished_run
    out = tmp_path / "repro"
    record = write_repro(settings, RUN_ID, CELL, out, None)
    assert record["original"] == {
        "outcome": "crashed",
        "reason": "the hypervisor reported a guest crash (panicked)",
        "crash_title": TITLE,
    }
    assert record["image"]["digest"] == "b" * 64
    assert json.loads((out / "repro.json").read_text()) == record
    # the candidate as the run read it, and the bytes the guest gets: zeros, as long as the shipped file
    assert (out / "candidate" / "candidate.yaml").read_bytes() == (candidate / "candidate.yaml").read_bytes()
    shipped = (candidate / "content" / "C-00000291.sys").read_bytes()
    assert (out / "staged" / "C-00000291.sys").read_bytes() == bytes(len(shipped))
    # a fresh overlay on the same golden image, under the run id the boot will use
    document = assert_valid("domain", (out / "domain.xml").read_text())
    domain = domain_name(record["repro_run_id"], CELL)
    assert document.findtext("name") == domain
    assert document.xpath("devices/disk/source/@file") == [
        str(settings.pool_dir(settings.hosts[0]) / f"{domain}.qcow2")
    ]
    assert document.xpath("//*[local-name()='image']/@digest") == ["b" * 64]
    script = (out / "boot.sh").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert f"repro {RUN_ID} '{CELL}' --out {out} --boot" in script  # the cell id quoted for sh
    assert (out / "boot.sh").stat().st_mode & 0o111


def test_the_cli_prints_the_command_that_boots_it(finished_run, tmp_path):
    _, _, _, config = finished_run
    out = tmp_path / "repro"
    result = CliRunner().invoke(app, ["--config", str(config), "repro", RUN_ID, CELL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"boot it: {out / 'boot.sh'}" in result.output
    assert TITLE in " ".join(result.output.split())
    assert f"--config {config}" in (out / "boot.sh").read_text()


def test_a_golden_image_rebuilt_since_the_run_is_refused(finished_run, tmp_path):
    settings, _, _, config = finished_run
    catalog = ImageCatalog(settings.images_dir)
    record = catalog.get(IMAGE)
    catalog.put(record.model_copy(update={"digest": "c" * 64}))
    with pytest.raises(
        ConfigurationError, match="the run booted digest bbbbbbbbbbbb, and it now holds cccccccccccc"
    ):
        write_repro(settings, RUN_ID, CELL, tmp_path / "repro", None)
    result = CliRunner().invoke(
        app, ["--config", str(config), "repro", RUN_ID, CELL, "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "exact golden image is gone" in " ".join(result.output.split())


def test_a_deleted_golden_image_is_refused(finished_run):
    settings, prepared, _, _ = finished_run
    (cell,) = prepared.plan.cells
    shutil.rmtree(ImageCatalog(settings.images_dir).get(IMAGE).directory)
    with pytest.raises(ConfigurationError, match="it holds no such image now"):
        exact_image(settings.images_dir, cell.image)


def test_a_changed_candidate_is_refused_naming_the_artifact(finished_run, tmp_path):
    settings, _, candidate, _ = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(candidate, moved)
    (moved / "sensor.msi").write_bytes(b"another build\n")
    manifest = yaml.safe_load((moved / "candidate.yaml").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["name"] == "sensor-windows":
            artifact["sha256"] = hashlib.sha256(b"another build\n").hexdigest()
    (moved / "candidate.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    with pytest.raises(
        ConfigurationError, match=r"artifact sensor-windows: the run pinned .* not the candidate of the run"
    ):
        write_repro(settings, RUN_ID, CELL, tmp_path / "repro", moved)


def test_content_that_no_longer_makes_the_planned_variant_is_refused(finished_run, tmp_path):
    settings, _, _, _ = finished_run
    plan_file = settings.runs_dir / RUN_ID / "plan.json"
    recorded = json.loads(plan_file.read_text())
    recorded["plan"]["cells"][0]["content_digests"] = [["channel-291", "0" * 64]]
    plan_file.write_text(json.dumps(recorded))
    with pytest.raises(ConfigurationError, match="channel-291: the zero-filled variant comes out as"):
        write_repro(settings, RUN_ID, CELL, tmp_path / "repro", None)


@pytest.mark.parametrize(
    ("run_id", "cell_id", "problem"),
    [
        ("20991231-000000-0000", CELL, "run 20991231-000000-0000: no evidence at"),
        (RUN_ID, "win10-22h2", r"has no cell 'win10-22h2' \(its cells: debian12-kernel-n~zero-filled\)"),
    ],
)
def test_an_unknown_run_or_cell_is_refused(finished_run, run_id, cell_id, problem):
    settings, _, _, _ = finished_run
    with pytest.raises(ConfigurationError, match=problem):
        read_run(settings.runs_dir, run_id, cell_id)


def test_a_run_without_a_plan_is_refused(finished_run):
    settings, _, _, _ = finished_run
    (settings.runs_dir / RUN_ID / "plan.json").unlink()
    with pytest.raises(ConfigurationError, match=r"kept no plan\.json"):
        read_run(settings.runs_dir, RUN_ID, CELL)


@pytest.mark.parametrize(
    ("outcome", "title", "reproduced"),
    [
        (CellOutcome.CRASHED, TITLE, True),
        (CellOutcome.CRASHED, "BUG: soft lockup - CPU#0 stuck", False),
        (CellOutcome.PASSED, None, False),
    ],
)
def test_a_repro_says_whether_the_cell_ended_the_same_way(finished_run, tmp_path, outcome, title, reproduced):
    settings, _, _, _ = finished_run
    record = write_repro(settings, RUN_ID, CELL, tmp_path / "repro", None)
    cell = CellResult(
        cell_id=CELL,
        image=IMAGE,
        kernel="6.1.0-56-amd64",
        host="local",
        outcome=outcome,
        reason="",
        crash={"title": title} if title else None,
    )
    result = RunResult(
        run_id="20261126-101010-abcd",
        matrix_name="repro",
        candidate_name="falcon-like",
        candidate_version="7.16.0",
        artifact_digests={},
        verdict=RunVerdict.FAILED,
        summary="",
        cells=[cell],
        evidence_dir="",
        started_at=0.0,
        finished_at=1.0,
    )
    summary = repro_summary(record, result)
    assert (summary["reproduced"], summary["crash_title"], summary["repro_run_id"]) == (
        reproduced,
        title,
        "20261126-101010-abcd",
    )
