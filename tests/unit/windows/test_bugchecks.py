"""The stop code table against Microsoft's published reference, and the titles made from it."""

import re

import pytest

from orchestrator.guests import windows
from orchestrator.guests.windows.bugchecks import BUGCHECK_NAMES, bugcheck_name, bugcheck_title, stop_code

pytestmark = pytest.mark.unit


def reference(fixtures_dir) -> dict[int, str]:
    rows = {}
    for line in (fixtures_dir / "windows" / "bugcheck-code-reference.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        code, name = line.split()
        assert re.fullmatch(r"0x[0-9A-F]{8}", code), line
        rows[int(code, 16)] = name
    return rows


def test_every_name_is_microsofts(fixtures_dir):
    published = reference(fixtures_dir)
    assert {code: published.get(code) for code in BUGCHECK_NAMES} == dict(BUGCHECK_NAMES)


def test_the_table_covers_the_common_codes():
    assert len(BUGCHECK_NAMES) >= 60
    for code in (
        0x0A,
        0x1A,
        0x1E,
        0x3B,
        0x50,
        0x7E,
        0x7F,
        0x9F,
        0xC2,
        0xD1,
        0xEF,
        0xF7,
        0x101,
        0x124,
        0x133,
        0x139,
    ):
        assert code in BUGCHECK_NAMES, stop_code(code)


@pytest.mark.parametrize(
    ("code", "module", "title"),
    [
        (0x50, None, "0x50 PAGE_FAULT_IN_NONPAGED_AREA"),
        (0x50, "csagent.sys", "0x50 PAGE_FAULT_IN_NONPAGED_AREA in csagent.sys"),
        (0xF7, "dlpfilter.sys", "0xF7 DRIVER_OVERRAN_STACK_BUFFER in dlpfilter.sys"),
        (0x7E, None, "0x7E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED"),
        (0x3B, None, "0x3B SYSTEM_SERVICE_EXCEPTION"),
        (0xD1, None, "0xD1 DRIVER_IRQL_NOT_LESS_OR_EQUAL"),
        (0x133, None, "0x133 DPC_WATCHDOG_VIOLATION"),
        (0x1000007E, None, "0x1000007E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"),
        (0xC0000420, None, "0xC0000420 (unnamed stop code)"),
    ],
)
def test_titles(code, module, title):
    assert bugcheck_title(code, module) == title


def test_unknown_code_has_no_name():
    assert bugcheck_name(0xC0000420) is None
    assert bugcheck_name(0x50) == "PAGE_FAULT_IN_NONPAGED_AREA"


def test_the_package_exports_what_it_lists():
    for name in windows.__all__:
        assert hasattr(windows, name), name
