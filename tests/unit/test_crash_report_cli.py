"""``testbed report CONSOLE.log``: the title for people, the report dict with --json, exit codes."""

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli.report_command import report

pytestmark = pytest.mark.unit

FORMATS = Path(__file__).resolve().parents[1] / "fixtures" / "console" / "formats"
TWO_REPORTS = FORMATS / "x86-6.1-warning-then-oops.log"
OOPS_TITLE = "BUG: kernel NULL pointer dereference in tbs_parse_channel [testbed_sensor]"
WARNING_TITLE = "WARNING in tbs_match_template [testbed_sensor]"


def run(*args: str):
    app = typer.Typer()  # the command alone: as `testbed report`, without the rest of the CLI
    app.command()(report)
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_prints_the_title_first_then_what_it_rests_on():
    result = run(TWO_REPORTS)

    assert result.exit_code == 1  # the console shows a kernel in trouble
    lines = result.output.splitlines()
    assert lines[0] == OOPS_TITLE  # brackets printed as is, not eaten as markup
    assert "  kind: null_pointer_dereference (kernel broken)" in lines
    assert "  panic: Fatal exception" in lines
    assert f"  also in that boot: {WARNING_TITLE}" in lines


def test_json_is_the_report_dict():
    result = run("--json", TWO_REPORTS)

    data = json.loads(result.output)
    assert result.exit_code == 1
    assert data["title"] == OOPS_TITLE
    assert (data["kind"], data["function"], data["module"]) == (
        "null_pointer_dereference",
        "tbs_parse_channel",
        "testbed_sensor",
    )
    assert data["others"] == [WARNING_TITLE]
    assert data["corrupted"] is False


def test_all_lists_every_report_of_every_boot():
    result = run("--all", "--json", TWO_REPORTS)

    assert [item["title"] for item in json.loads(result.output)] == [WARNING_TITLE, OOPS_TITLE]


def test_a_guest_that_came_back_is_reported_by_the_boot_that_went_down():
    recovered = FORMATS.parent / "sensor-safe-mode-recovered-6.1.0-56.log"

    result = run(recovered)

    assert result.exit_code == 1
    title = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
    assert result.output.splitlines()[0] == title


def test_a_clean_console_exits_0():
    clean = FORMATS / "clean-chatter.log"

    assert run(clean).output == f"no kernel report in {clean}\n"
    assert run(clean).exit_code == 0
    assert json.loads(run("--json", clean).output) is None


def test_a_missing_file_is_bad_input_naming_the_file(tmp_path):
    missing = tmp_path / "console.log"

    result = run(missing)

    assert result.exit_code == 3
    assert f"console log {missing}: no such file" in result.output
