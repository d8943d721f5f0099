"""Reports in a whole console: every report of every boot, and the one that brought the last boot down."""

import codecs
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from orchestrator.core.crash.lines import line_blocks
from orchestrator.core.crash.report import CrashReport
from orchestrator.core.crash.scanner import ConsoleScanner

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # a guest can flood its serial port: only the end is read
_CHUNK_BYTES = 4 * 1024 * 1024
_BANNERS = (b"] Linux version ", b"\nLinux version ")


def find_reports(text: str, max_excerpt_lines: int = 120) -> list[CrashReport]:
    """Every report of every boot, in the order they started."""
    scanner = ConsoleScanner(excerpt_lines=max_excerpt_lines)
    scanner.feed(text, final=True)
    return scanner.finish()


def parse_console(text: str, max_excerpt_lines: int = 120) -> CrashReport | None:
    """The report that brought the last boot down; None when that boot shows none.

    That is the first report that led to the boot's panic (the first one that means a broken
    kernel, up to the one the panic line belongs to), or without a panic the boot's last report.
    """
    scanner = ConsoleScanner(last_boots_only=True, excerpt_lines=max_excerpt_lines)
    scanner.feed(text, final=True)
    return _bringing_down(scanner)


def find_reports_in_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[CrashReport]:
    """``find_reports`` on the last ``max_bytes`` of a console log (boots before them still counted)."""
    return _scan_file(path, max_bytes, last_boots_only=False).finish()


def parse_console_file(
    path: Path, max_bytes: int = DEFAULT_MAX_BYTES, *, latest_down: bool = False
) -> CrashReport | None:
    """``parse_console`` on the last ``max_bytes`` of a console log. With ``latest_down``, when the
    last boot shows no report: the one that brought down the latest boot that went down (a guest
    that crashed, was reset and came back up)."""
    return _bringing_down(_scan_file(path, max_bytes, last_boots_only=not latest_down), latest_down)


def _bringing_down(scanner: ConsoleScanner, latest_down: bool = False) -> CrashReport | None:
    reports = scanner.finish()
    boot = scanner.last_boot
    while boot > 0 and boot in scanner.capture_boots:  # a kdump kernel boots after the crash it saves
        boot -= 1
    in_boot = [report for report in reports if report.boot == boot]
    if not in_boot and latest_down:
        down = [r.boot for r in reports if r.fatal and r.boot < boot and r.boot not in scanner.capture_boots]
        latest = max(down, default=None)
        in_boot = [report for report in reports if report.boot == latest]
    if not in_boot:
        return None
    panicked = next((i for i, report in enumerate(in_boot) if report.panic_reason is not None), None)
    if panicked is None:
        chosen = in_boot[-1]
    else:
        chosen = next(report for report in in_boot[: panicked + 1] if report.fatal)
        chosen = replace(chosen, panic_reason=in_boot[panicked].panic_reason)
    others = tuple(r.title for r in in_boot if r is not chosen and r.title != chosen.title)
    return replace(chosen, others=others)


def _scan_file(path: Path, max_bytes: int, *, last_boots_only: bool) -> ConsoleScanner:
    with path.open("rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes)
        scanner = ConsoleScanner(boots_before=_count_banners(stream, start), last_boots_only=last_boots_only)
        stream.seek(start)
        blocks = line_blocks(_decoded(stream, skip_first_line=start > 0))
        block = next(blocks, None)
        while block is not None:
            following = next(blocks, None)
            scanner.feed(block, final=following is None)
            block = following
    return scanner


def _decoded(stream: BinaryIO, *, skip_first_line: bool) -> Iterator[str]:
    """The stream as text; undecodable bytes become U+FFFD. A line cut by the start offset is dropped."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    skipping = skip_first_line
    while data := stream.read(_CHUNK_BYTES):
        text = decoder.decode(data)
        if skipping:
            newline = text.find("\n")
            if newline < 0:
                continue
            text, skipping = text[newline + 1 :], False
        yield text
    if tail := decoder.decode(b"", final=True):
        yield tail


def _count_banners(stream: BinaryIO, end: int) -> int:
    """Kernel banners in the part of the console that is not read: boot numbers stay those of the log."""
    count, position, carry = 0, 0, b""
    stream.seek(0)
    while position < end:
        data = stream.read(min(_CHUNK_BYTES, end - position))
        if not data:
            break
        position += len(data)
        window = carry + data
        count += sum(window.count(banner) for banner in _BANNERS)
        carry = window[-16:]
        count -= sum(carry.count(banner) for banner in _BANNERS)  # counted again with the next chunk
    return count + sum(carry.count(banner) for banner in _BANNERS)
