"""Crash grouping: identical failures across cells are one group, named once, listing its cells."""

import json

import pytest

from orchestrator.core.grouping import (
    FailureGroup,
    describe,
    group_failures,
    groups_as_dicts,
    normalize_reason,
)
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunResult

pytestmark = pytest.mark.unit

NULL_DEREF = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
STACK_OVERRUN = "BUG: stack guard page was hit in tbs_eval_compound [testbed_sensor]"
DLP_GPF = "general protection fault in tbs_on_probe [testbed_sensor]"


def result(
    cell_id: str,
    outcome: CellOutcome,
    reason: str = "",
    title: str | None = None,
    module: str | None = None,
    **extra: object,
) -> CellResult:
    crash = None if title is None else {"title": title, "module": module, "kind": "bug"}
    return CellResult(
        cell_id=cell_id,
        image=cell_id.split("+", maxsplit=1)[0],
        kernel="6.1.0-56-amd64",
        host="local",
        outcome=outcome,
        reason=reason,
        crash=crash,
        **extra,
    )


def crashed(
    cell_id: str, title: str = NULL_DEREF, module: str | None = "testbed_sensor", **extra: object
) -> CellResult:
    reason = "the hypervisor reported a guest crash (panicked)"
    return result(cell_id, CellOutcome.CRASHED, reason, title, module, **extra)


def test_the_incident_run_reads_as_one_finding():
    cells = [crashed(f"debian12-kernel-n~v{i}") for i in range(6)] + [
        result("debian12-kernel-n", CellOutcome.PASSED, "3 boot(s) ready and stable"),
        result("debian12-kernel-n1", CellOutcome.PASSED, "3 boot(s) ready and stable"),
    ]
    (group,) = group_failures(cells)
    assert group == FailureGroup(
        CellOutcome.CRASHED, NULL_DEREF, "testbed_sensor", tuple(f"debian12-kernel-n~v{i}" for i in range(6))
    )
    assert describe(group, 8) == (
        "crashed on 6 of 8 cells: BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
    )


def test_groups_are_keyed_by_outcome_title_and_module():
    cells = [
        crashed("a"),
        crashed("b", STACK_OVERRUN),
        crashed("c"),
        result("d", CellOutcome.HUNG, "no readiness", NULL_DEREF, "testbed_sensor"),  # same title, hung
        crashed("e", NULL_DEREF, module="testbed_dlp"),  # same title text, other module
        crashed("f", STACK_OVERRUN),
        crashed("g", STACK_OVERRUN),
    ]
    assert [(g.outcome, g.title, g.module, g.cells) for g in group_failures(cells)] == [
        (CellOutcome.CRASHED, STACK_OVERRUN, "testbed_sensor", ("b", "f", "g")),
        (CellOutcome.CRASHED, NULL_DEREF, "testbed_sensor", ("a", "c")),
        # ties by title, then outcome, then module
        (CellOutcome.CRASHED, NULL_DEREF, "testbed_dlp", ("e",)),
        (CellOutcome.HUNG, NULL_DEREF, "testbed_sensor", ("d",)),
    ]


def test_candidate_failures_come_before_infrastructure_errors_and_never_mix():
    cells = [
        result("i1", CellOutcome.INFRA_ERROR, "Provision: host local: cannot create overlay"),
        result("i2", CellOutcome.INFRA_ERROR, "Provision: host local: cannot create overlay"),
        result("i3", CellOutcome.INFRA_ERROR, "Provision: host local: cannot create overlay"),
        result("d1", CellOutcome.DEGRADED, "boot 1: sshd does not answer"),
    ]
    groups = group_failures(cells)
    assert [(g.outcome, g.cells) for g in groups] == [
        (CellOutcome.DEGRADED, ("d1",)),
        (CellOutcome.INFRA_ERROR, ("i1", "i2", "i3")),
    ]


@pytest.mark.parametrize(
    ("outcome", "extra"),
    [
        (CellOutcome.PASSED, {}),
        (CellOutcome.CANCELED, {}),
        (CellOutcome.CRASHED, {"control_of": "a"}),  # a control twin is evidence for another cell
        # a control image that hung as it is there to do counts as a pass
        (CellOutcome.HUNG, {"observed": CellOutcome.HUNG, "expected_outcome": CellOutcome.HUNG}),
    ],
)
def test_what_is_not_a_failure_is_not_grouped(outcome, extra):
    assert group_failures([result("x", outcome, "whatever", NULL_DEREF, "testbed_sensor", **extra)]) == []


def test_a_control_image_that_did_something_else_is_grouped():
    surprise = result(
        "hang-image",
        CellOutcome.CRASHED,
        "crashed",
        NULL_DEREF,
        "testbed_sensor",
        observed=CellOutcome.CRASHED,
        expected_outcome=CellOutcome.HUNG,
    )
    assert [g.cells for g in group_failures([surprise])] == [("hang-image",)]


def test_reasons_without_a_crash_report_are_grouped_with_numbers_and_hex_taken_out():
    cells = [
        result("a", CellOutcome.HUNG, "boot 2 did not become ready within 300s"),
        result("b", CellOutcome.HUNG, "boot 3 did not become ready within 120.5s"),
        result("c", CellOutcome.BOOT_LOOP, "the guest reset 3 time(s) without becoming ready"),
        result("d", CellOutcome.BOOT_LOOP, "the guest reset 4 time(s) without becoming ready"),
        result("e", CellOutcome.HUNG, "boot 1 did not become ready within 300s"),
    ]
    assert [(g.outcome, g.title, g.module, g.cells) for g in group_failures(cells)] == [
        (CellOutcome.HUNG, "boot N did not become ready within Ns", None, ("a", "b", "e")),
        (CellOutcome.BOOT_LOOP, "the guest reset N time(s) without becoming ready", None, ("c", "d")),
    ]


def test_a_crash_without_a_title_falls_back_to_the_reason():
    cells = [
        result("a", CellOutcome.CRASHED, "the hypervisor reported a guest crash (panicked)"),
        CellResult(
            "b", "img", "k", None, CellOutcome.CRASHED, "the hypervisor reported a guest crash (panicked)", {}
        ),
    ]
    (group,) = group_failures(cells)
    assert (group.title, group.module, group.cells) == (
        "the hypervisor reported a guest crash (panicked)",
        None,
        ("a", "b"),
    )


def test_an_empty_reason_still_names_the_group():
    (group,) = group_failures([result("a", CellOutcome.INSTALL_FAILED, "")])
    assert group.title == "(no reason given)"


@pytest.mark.parametrize(
    ("reason", "normalized"),
    [
        ("boot 2 did not become ready within 300s", "boot N did not become ready within Ns"),
        ("panic hyper-v: arg1='0x50', arg2='0xffffd000deadbeef'", "panic hyper-v: arg1='ADDR', arg2='ADDR'"),
        ("fault at ffffffffc0a01234 in task 4711", "fault at ADDR in task N"),
        (
            "digest 5adf7587824a9bcb1de10987f6b96e2f19ec528879faef2808edf1977d4d8651 differs",
            "digest ADDR differs",
        ),
        # names that carry digits are names, words made of hex letters are words
        ("debian12-kernel-n1: sshd on port 22 refused", "debian12-kernel-n1: sshd on port N refused"),
        ("kernel 6.1.0-56-amd64 deadbeefcafe accepted", "kernel N-N-amd64 deadbeefcafe accepted"),
        ("  two\n lines\tand  spaces ", "two lines and spaces"),
        ("guest said \x1b[31mred\x1b[0m and \x00", "guest said red and ?"),  # escapes go before numbers
    ],
)
def test_normalize_reason(reason, normalized):
    assert normalize_reason(reason) == normalized


@pytest.mark.parametrize(
    ("group", "total", "line"),
    [
        (
            FailureGroup(CellOutcome.CRASHED, NULL_DEREF, "testbed_sensor", ("a",)),
            1,
            f"crashed on 1 of 1 cell: {NULL_DEREF}",
        ),
        # a title from elsewhere (a Windows stop code) gets its module appended
        (
            FailureGroup(
                CellOutcome.CRASHED, "DRIVER_OVERRAN_STACK_BUFFER (0xf7)", "csagent.sys", ("a", "b")
            ),
            4,
            "crashed on 2 of 4 cells: DRIVER_OVERRAN_STACK_BUFFER (0xf7) [csagent.sys]",
        ),
        (
            FailureGroup(CellOutcome.INFRA_ERROR, "Provision: cannot create overlay", None, ("a", "b", "c")),
            3,
            "infra_error on 3 of 3 cells: Provision: cannot create overlay",
        ),
    ],
)
def test_describe(group, total, line):
    assert describe(group, total) == line


def test_the_run_result_carries_the_groups_for_json():
    cells = [
        crashed("n1@1.0.0"),
        crashed("n@1.0.0"),
        result("n@1.1.0", CellOutcome.PASSED, "ok"),
        result("n1@1.1.0", CellOutcome.INFRA_ERROR, "host local: libvirt connection lost"),
        crashed("n1@1.0.0.control", control_of="n1@1.0.0"),  # not counted, not grouped
    ]
    run = RunResult(
        run_id="r1",
        matrix_name="incidents",
        candidate_name="sensor",
        candidate_version="1.1.0",
        artifact_digests={},
        verdict=RunVerdict.FAILED,
        summary="2 of 4 cell(s) failed",
        cells=cells,
        evidence_dir="/runs/r1",
        started_at=0.0,
        finished_at=1.0,
    )
    groups = json.loads(json.dumps(run.as_dict()))["groups"]
    assert groups == [
        {
            "outcome": "crashed",
            "title": NULL_DEREF,
            "module": "testbed_sensor",
            "count": 2,
            "cells": ["n1@1.0.0", "n@1.0.0"],
            "summary": f"crashed on 2 of 4 cells: {NULL_DEREF}",
        },
        {
            "outcome": "infra_error",
            "title": "host local: libvirt connection lost",
            "module": None,
            "count": 1,
            "cells": ["n1@1.1.0"],
            "summary": "infra_error on 1 of 4 cells: host local: libvirt connection lost",
        },
    ]
    assert groups == groups_as_dicts(cells)


def test_no_failures_no_groups():
    assert group_failures([]) == []
    assert groups_as_dicts([result("a", CellOutcome.PASSED, "ok")]) == []
