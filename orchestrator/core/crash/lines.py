"""Console text as the parser reads it: physical lines found fast, split into the kernel's own lines.

A serial console is untrusted and can be huge. Three habits keep the parser linear and bounded:

- The text is never split into a list. A console is read block by block; while no report is open,
  the next line worth reading is found with one ``str.find`` per keyword (C speed), so the noise
  between reports costs no Python per line.
- A physical line is read up to ``MAX_LINE_CHARS``; the rest of a flood line is never looked at.
- A physical line may hold several kernel lines (user space wrote without a newline, or the kernel
  line was cut and the next one glued to it): it is split at each kernel timestamp, and a piece
  followed by another is marked ``cut``.
"""

import heapq
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

MAX_LINE_CHARS = 4096
Keyword = str | re.Pattern[str]

# "[  12.345678]", with the syslog level ("<4>") and the printk caller ("[ T123]" / "[ C1]") when printed.
_STAMP = re.compile(
    r"(?:<\d{1,2}>)?\[\s{0,12}(?P<seconds>\d{1,8}\.\d{1,9})\](?:\[\s{0,8}(?P<context>[CT]\d{1,8})\])? ?"
)
# What a log collector puts before the kernel's words (syslog, journal), and the kernel's own note of loss.
_SYSLOG_PREFIX = re.compile(
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?) \S+ kernel: "
)
_DROPPED = re.compile(r"\*\* \d+ printk messages dropped \*\*\s*")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# Control characters but tab, C1 controls, what XML 1.0 cannot carry, and the bidi controls that
# make a terminal show text in another order than it is (U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff\ufffe\uffff]"
)


class ConsoleLine(NamedTuple):
    """One line as the kernel printed it (a tuple: the scanner makes one per line it reads)."""

    text: str  # the message: timestamp, caller id and collector prefixes removed; terminal-safe
    seconds: float | None  # the kernel timestamp, when printed
    context: str | None  # the printk caller ("T123" a task, "C1" a CPU), when printed
    cut: bool  # something was glued after it, or the console ended in it: it may be incomplete
    physical: int  # offset of the physical console line it came from (lines of one report share it)
    lost_before: bool = False  # the kernel noted that console messages were dropped just before it


def safe_text(text: str) -> str:
    """ESC sequences and control characters (but tab) removed: safe for terminals, JSON and XML."""
    if text.isprintable():
        return text
    return _UNSAFE.sub("", _ANSI.sub("", text))


def split_physical(raw: str, offset: int, ends_console: bool) -> list[ConsoleLine]:
    """The kernel lines one physical console line holds (usually one)."""
    raw = raw[:MAX_LINE_CHARS]
    lost = "printk messages dropped" in raw and _DROPPED.search(raw) is not None
    if lost:
        raw = _DROPPED.sub("", raw)
    stamps = list(_STAMP.finditer(raw))
    if not stamps:
        return [ConsoleLine(_message(raw), None, None, ends_console, offset, lost)]
    pieces = []
    head = raw[: stamps[0].start()]
    if head.strip():
        pieces.append(ConsoleLine(_message(head), None, None, True, offset, lost))
    for index, stamp in enumerate(stamps):
        last = index == len(stamps) - 1
        end = len(raw) if last else stamps[index + 1].start()
        pieces.append(
            ConsoleLine(
                _message(raw[stamp.end() : end]),
                float(stamp.group("seconds")),
                stamp.group("context"),
                ends_console if last else True,
                offset,
                lost,
            )
        )
    return pieces


def _message(text: str) -> str:
    text = safe_text(text).rstrip()
    if "kernel: " in text:
        text = _SYSLOG_PREFIX.sub("", text, count=1)
    return text


def has_timestamp(text: str, start: int = 0, end: int | None = None) -> bool:
    return _STAMP.search(text, start, len(text) if end is None else end) is not None


class KeywordFinder:
    """Where the next line holding any of the keywords starts, in one block of console text.

    One ``str.find`` per keyword, repeated only past each occurrence: linear in the block, at C speed.
    A keyword may be a regex that starts with a literal (Python's ``re`` scans for the literal in C):
    it then also rejects, in C, the occurrences no report starts with.
    """

    def __init__(self, block: str, keywords: Iterable[Keyword]) -> None:
        self._block = block
        self._heap: list[tuple[int, int]] = []
        self._keywords = list(keywords)
        for index in range(len(self._keywords)):
            found = self._find(index, 0)
            if found >= 0:
                self._heap.append((found, index))
        heapq.heapify(self._heap)

    def _find(self, index: int, position: int) -> int:
        keyword = self._keywords[index]
        if isinstance(keyword, str):
            return self._block.find(keyword, position)
        found = keyword.search(self._block, position)
        return found.start() if found else -1

    def next_line_start(self, position: int) -> int | None:
        """Start of the first line at or after ``position`` that holds a keyword; None when none does."""
        heap = self._heap
        while heap:
            found, index = heap[0]
            if found >= position:
                return self._block.rfind("\n", position, found) + 1 or position
            again = self._find(index, position)
            if again < 0:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (again, index))
        return None


def line_blocks(chunks: Iterable[str]) -> Iterator[str]:
    """Chunks of console text regrouped into blocks that end with a newline (but maybe the last).

    A line longer than ``MAX_LINE_CHARS`` that spans chunks keeps only its beginning, so a guest
    flooding its console without newlines cannot make the parser hold more than a chunk.
    """
    carry = ""
    for chunk in chunks:
        newline = chunk.rfind("\n")
        if newline < 0:
            carry = (carry + chunk)[: MAX_LINE_CHARS * 2] if len(carry) < MAX_LINE_CHARS * 2 else carry
            continue
        block = carry + chunk[: newline + 1]
        rest = chunk[newline + 1 :]
        carry = rest[: MAX_LINE_CHARS * 2]
        yield block
    if carry:
        yield carry
