"""The crash parser on console logs captured from real guests running the sample sensor."""

from pathlib import Path

import pytest

from orchestrator.core.crash_report import CrashKind, parse_console

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "console"
NULL_DEREF = "BUG: kernel NULL pointer dereference, address: 0000000000000010"


@pytest.mark.parametrize(
    ("log", "task"),
    [
        # Installed with zero-filled content: modprobe faults; the oops line follows a login prompt.
        ("sensor-zero-filled-install-panic-6.1.0-56.log", "modprobe"),
        # The next boot of the same disk: systemd-modules-load faults (the boot loop of 2024).
        ("sensor-zero-filled-boot-panic-6.1.0-56.log", "systemd-modules"),
    ],
)
def test_zero_filled_content_panic_is_titled_by_the_oops_line_and_the_sensor_module(
    log: str, task: str
) -> None:
    text = (FIXTURES / log).read_text(errors="replace")

    report = parse_console(text)

    assert report is not None
    assert report.kind is CrashKind.NULL_DEREF
    assert report.title == "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"
    assert report.first_line == NULL_DEREF
    assert (report.function, report.module) == ("tbs_match_template", "testbed_sensor")
    assert report.panic_reason == "Fatal exception"
    assert report.tainted is not None and "O" in report.tainted  # out-of-tree module
    assert report.modules_linked[0].startswith("testbed_sensor")
    assert any(f"Comm: {task}" in line for line in report.excerpt)


def test_good_content_boots_show_no_crash() -> None:
    text = (FIXTURES / "sensor-good-content-boots-6.1.0-56.log").read_text(errors="replace")

    assert parse_console(text) is None
