"""Text a guest printed is untrusted: make it safe for terminals, XML and single-line display.

A guest can print anything on its console — ESC sequences that rewrite a terminal, NUL and other
characters that XML 1.0 forbids, megabytes on one line. Whatever reaches a person or a report
passes through here first (JSON needs nothing more: its encoder escapes control characters).

Beyond control characters, two kinds of code point are unsafe on a terminal: lone surrogates (a
console decoded with ``surrogateescape``, or JSON read back with ``\\udXXX`` escapes), which make
the UTF-8 encoder of stdout raise and would end ``testbed gate`` before its verdict; and the Unicode
bidirectional overrides and isolates, which reorder what a person sees ("Trojan Source",
CVE-2021-42574). Both are shown as '?'.
"""

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST, or unterminated), and every other escape:
# intermediates then one final byte (ESC c resets the terminal, ESC ( B picks a character set).
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def for_terminal(text: str) -> str:
    """Escape sequences removed; other control characters (but tab and newline), lone surrogates and
    bidirectional overrides shown as '?'."""
    return _CONTROL.sub("?", _ANSI.sub("", text))


def for_xml(text: str) -> str:
    """Characters XML 1.0 cannot carry removed (escaping of <, & is the serializer's job)."""
    return _XML_INVALID.sub("", for_terminal(text))


def one_line(text: str, limit: int = 300) -> str:
    """A single, bounded, terminal-safe line."""
    flat = " ".join(for_terminal(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
