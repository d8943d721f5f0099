"""Guest text made safe: nothing a guest prints can drive the terminal, break the JUnit XML or the
encoder of stdout; ordinary text, markup-looking text included, comes through as text."""

import io
import xml.etree.ElementTree as ET

import pytest

from orchestrator.core.sanitize import for_terminal, for_xml, one_line

pytestmark = pytest.mark.unit

TITLE = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"


@pytest.mark.parametrize(
    ("guest_text", "shown"),
    [
        (TITLE, TITLE),
        ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
        ("\x1b[31mred\x1b[0m", "red"),  # CSI colour
        ("\x1b[2J\x1b[Hcleared", "cleared"),  # clear screen, cursor home
        ("\x1b]0;pwned title\x07after", "after"),  # OSC window title, BEL-terminated
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, ST-terminated
        ("\x1bcreset", "reset"),  # RIS: full terminal reset
        ("\x1b(Bplain\x1b7saved\x1b8", "plainsaved"),  # character set, save/restore cursor
        ("half \x1b[", "half "),  # an escape cut off at the end of the console
        ("NUL\x00here", "NUL?here"),
        ("bell\x07 back\x08space\rreturn", "bell? back?space?return"),
        ("DEL\x7f C1 CSI\x9b31m", "DEL? C1 CSI?31m"),
        ("lone \ud800 surrogate \udfff", "lone ? surrogate ?"),
        ("admin\u202e\u2066txt.exe\u2069", "admin??txt.exe?"),  # bidi override and isolates
        ("ünïcödé — ok ✓ 日本", "ünïcödé — ok ✓ 日本"),
        ("<script>alert(1)</script> & [bold]x[/bold]", "<script>alert(1)</script> & [bold]x[/bold]"),
    ],
)
def test_for_terminal(guest_text, shown):
    assert for_terminal(guest_text) == shown


HOSTILE = [
    "NUL\x00 ESC\x1b[31m BEL\x07",
    "lone \ud800 and \udc80 surrogates",
    "not characters \ufffe \uffff",
    "<script>alert('x')</script> & \"quotes\" 'single'",
    "\x1b]0;title\x07\x01\x02\x03\x1f\x7f\x85\x9f",
    "ok \U0001f600 astral",
]


@pytest.mark.parametrize("guest_text", HOSTILE)
def test_for_xml_keeps_the_document_valid(guest_text):
    safe = for_xml(guest_text)
    element = ET.Element("failure", message=safe)
    element.text = safe
    parsed = ET.fromstring(ET.tostring(element, encoding="utf-8"))
    assert parsed.get("message") == safe
    assert parsed.text == safe


def test_for_xml_leaves_markup_to_the_serializer():
    # Escaping < and & twice would show "&amp;lt;" in the CI's page: for_xml leaves them alone.
    assert for_xml("<script>x & y</script>") == "<script>x & y</script>"
    assert for_xml("NUL\x00 \ufffe\ud800end") == "NUL? ?end"


@pytest.mark.parametrize("guest_text", HOSTILE)
def test_terminal_text_can_be_written_to_a_utf8_stream(guest_text):
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stream.write(for_terminal(guest_text))  # raises UnicodeEncodeError for a lone surrogate
    stream.flush()


@pytest.mark.parametrize(
    ("guest_text", "limit", "line"),
    [
        ("a\n  b\t\tc  ", 300, "a b c"),
        ("\x1b[1mbold\x1b[0m\nnext", 300, "bold next"),
        ("x" * 400, 300, "x" * 299 + "…"),
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("", 300, ""),
    ],
)
def test_one_line(guest_text, limit, line):
    assert one_line(guest_text, limit) == line
    assert len(one_line(guest_text, limit)) <= limit


def test_sanitizing_a_megabyte_line_is_linear():
    # An unterminated OSC and a flood of ESC bytes: the patterns must not backtrack quadratically.
    hostile = "\x1b]" + "a" * 1_000_000 + "\x1b[" * 100_000
    assert len(for_xml(hostile)) <= len(hostile)
    assert len(one_line(hostile)) <= 300
