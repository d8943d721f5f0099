"""Statements built from real run.json files: what run.json must hold, and what each verdict says."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.attest.run_facts import run_facts
from orchestrator.attest.statements import (
    GATE_PASSED_LEVEL,
    STATEMENT_TYPE,
    TEST_RESULT_PREDICATE,
    VSA_PREDICATE,
    PolicyRef,
    build_test_result_statement,
    build_vsa_statement,
    resource_uri,
    statement_bytes,
)
from orchestrator.core.outcomes import RunVerdict
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "attest"
MATRIX = PolicyRef(uri="file:///srv/matrices/linux-kernels.yaml", sha256="ab" * 32)
GOOD_CONTENT = "281672ee8ca868516f024ca4a9c56c5eacd46fa39cb93e34f0b8bb0260584669"
ZERO_FILLED_CONTENT = "0645a4a67dcec462dc9f335bb0564e6e39bf12ea7e40cf8de81418210102c2d1"
SENSOR = "b5db875f105c32a42ed1805093e92ed574d0f1de4558664cab4868f7ba6e7f9f"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def vsa_for(data: dict[str, Any]) -> dict[str, Any] | None:
    return build_vsa_statement(
        run_facts(data),
        verifier_id="urn:endpoint-testbed:gate",
        verifier_version="0.1.0",
        policy=MATRIX,
        input_attestations=[{"uri": "file:///r/test-result.dsse.json", "digest": {"sha256": "cd" * 32}}],
    )


def test_passed_run_says_passed_for_every_artifact_and_cell() -> None:
    facts = run_facts(load("run-passed.json"))
    statement = build_test_result_statement(facts, MATRIX, "file:///var/lib/endpoint-testbed/runs/x")
    assert statement is not None
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == TEST_RESULT_PREDICATE
    assert statement["subject"] == [
        {"name": "channel-291", "digest": {"sha256": GOOD_CONTENT}},
        {"name": "sensor-linux", "digest": {"sha256": SENSOR}},
    ]
    predicate = statement["predicate"]
    assert predicate["result"] == "PASSED"
    assert predicate["passedTests"] == ["debian12-kernel-n", "debian12-kernel-n1"]
    assert predicate["failedTests"] == []
    assert predicate["configuration"][0] == {
        "name": "matrix:kernels-n-and-n1",
        "uri": MATRIX.uri,
        "digest": {"sha256": MATRIX.sha256},
        "annotations": {"cells": 2},
    }
    assert predicate["url"] == "file:///var/lib/endpoint-testbed/runs/x"


def test_failed_run_says_failed_and_names_the_crashed_cells() -> None:
    statement = build_test_result_statement(run_facts(load("run-failed.json")), MATRIX)
    assert statement is not None
    assert statement["predicate"]["result"] == "FAILED"
    assert statement["predicate"]["failedTests"] == ["debian12-kernel-n", "debian12-kernel-n1"]
    assert statement["predicate"]["passedTests"] == []
    assert {"name": "channel-291", "digest": {"sha256": ZERO_FILLED_CONTENT}} in statement["subject"]
    vsa = vsa_for(load("run-failed.json"))
    assert vsa is not None
    assert vsa["predicate"]["verificationResult"] == "FAILED"
    assert vsa["predicate"]["verifiedLevels"] == ["FAILED"]


def test_inconclusive_run_yields_no_statement_at_all() -> None:
    facts = run_facts(load("run-inconclusive.json"))
    assert facts.verdict is RunVerdict.INCONCLUSIVE
    assert build_test_result_statement(facts, MATRIX) is None
    assert vsa_for(load("run-inconclusive.json")) is None


def test_vsa_of_a_passed_run() -> None:
    vsa = vsa_for(load("run-passed.json"))
    assert vsa is not None
    assert vsa["predicateType"] == VSA_PREDICATE
    predicate = vsa["predicate"]
    assert predicate["verifier"]["id"] == "urn:endpoint-testbed:gate"
    assert predicate["timeVerified"] == "2026-11-25T22:39:42Z"  # the run's end, not the signing time
    assert predicate["resourceUri"] == "pkg:generic/testbed-sensor@1.0.0"
    assert predicate["policy"] == {"uri": MATRIX.uri, "digest": {"sha256": MATRIX.sha256}}
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["verifiedLevels"] == [GATE_PASSED_LEVEL]
    assert predicate["inputAttestations"][0]["digest"] == {"sha256": "cd" * 32}


def test_integers_stay_integers_in_the_signed_bytes() -> None:
    statement = build_test_result_statement(run_facts(load("run-passed.json")), MATRIX)
    assert statement is not None
    decoded = json.loads(statement_bytes(statement))
    cells = decoded["predicate"]["configuration"][0]["annotations"]["cells"]
    assert cells == 2
    assert type(cells) is int
    assert b'"cells":2' in statement_bytes(statement)


def test_payload_is_compact_sorted_and_stable() -> None:
    statement = build_test_result_statement(run_facts(load("run-passed.json")), MATRIX)
    assert statement is not None
    assert statement_bytes(statement) == statement_bytes(copy.deepcopy(statement))
    assert statement_bytes(statement).startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":')


def test_image_digests_from_the_plan_become_configuration() -> None:
    data = load("run-passed.json")
    data["status"] = "finished"
    data["plan"] = {
        "cells": [
            {"cell_id": "debian12-kernel-n", "image": {"name": "debian12-kernel-n", "digest": "1" * 64}},
            {"cell_id": "debian12-kernel-n1", "image": {"name": "debian12-kernel-n1", "digest": "2" * 64}},
        ]
    }
    statement = build_test_result_statement(run_facts(data), MATRIX)
    assert statement is not None
    assert statement["predicate"]["configuration"][1:] == [
        {
            "name": "image:debian12-kernel-n",
            "digest": {"sha256": "1" * 64},
            "annotations": {"kernel": "6.1.0-56-amd64"},
        },
        {
            "name": "image:debian12-kernel-n1",
            "digest": {"sha256": "2" * 64},
            "annotations": {"kernel": "6.1.0-55-amd64"},
        },
    ]


def test_matrix_digest_recorded_by_newer_runs_is_read() -> None:
    data = load("run-passed.json")
    data["matrix"] = {"name": "kernels-n-and-n1", "sha256": "ef" * 32, "source": "/srv/m.yaml"}
    facts = run_facts(data)
    assert (facts.matrix_name, facts.matrix_sha256, facts.matrix_source) == (
        "kernels-n-and-n1",
        "ef" * 32,
        "/srv/m.yaml",
    )


def test_passed_cells_with_warnings_make_the_result_warned() -> None:
    data = load("run-passed.json")
    data["cells"][1]["warnings"] = ["the sensor logged a taint"]
    statement = build_test_result_statement(run_facts(data), MATRIX)
    assert statement is not None
    assert statement["predicate"]["result"] == "WARNED"
    assert statement["predicate"]["passedTests"] == ["debian12-kernel-n"]
    assert statement["predicate"]["warnedTests"] == ["debian12-kernel-n1"]


def test_resource_uri_escapes_the_version() -> None:
    assert resource_uri("testbed-sensor", "1.0.0+build 7") == "pkg:generic/testbed-sensor@1.0.0+build%207"


def _parent(data: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    return node, int(last) if last.isdigit() else last


def _without(path: str) -> dict[str, Any]:
    data = load("run-passed.json")
    node, key = _parent(data, path)
    del node[key]
    return data


def _with(path: str, value: Any) -> dict[str, Any]:
    data = load("run-passed.json")
    node, key = _parent(data, path)
    node[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_without("run_id"), "field run_id is missing"),
        (_without("verdict"), "field verdict is missing"),
        (_with("verdict", "maybe"), "field verdict must be one of"),
        (_without("candidate.artifacts"), "field candidate.artifacts is missing"),
        (_with("candidate.artifacts", {}), "candidate.artifacts must map artifact names to sha256"),
        (_with("candidate.artifacts", {"channel-291": "abc"}), "candidate.artifacts.channel-291 must be 64"),
        (_without("candidate.version"), "field candidate.version is missing"),
        (_without("finished_at"), "field finished_at is missing"),
        (_with("finished_at", "yesterday"), "field finished_at must be seconds"),
        (_with("status", "running"), "the run is not finished (status 'running')"),
        (_with("cells", []), "verdict passed, but the run has no cells"),
        (
            _with("cells.1.outcome", "infra_error"),
            "verdict passed, but cell debian12-kernel-n1 ended infra_error",
        ),
        (_with("verdict", "failed"), "verdict failed, but no cell failed because of the candidate"),
        (_without("cells.0.outcome"), "field cells[0].outcome is missing"),
        ([], "not a JSON object"),
    ],
)
def test_run_json_that_cannot_be_attested_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^run\.json: ") as raised:
        run_facts(data)
    assert message in str(raised.value)


def test_the_package_exports_exactly_its_public_names() -> None:
    """Everything imported into orchestrator.attest (submodules aside) is in __all__, and nothing else."""
    import types

    from orchestrator import attest

    imported = {
        name
        for name, value in vars(attest).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(attest.__all__) == sorted(imported)
