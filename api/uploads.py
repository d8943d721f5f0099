"""Receive a candidate bundle from a multipart request, streamed to disk, never held in memory.

Starlette's form parsing reads the whole body before a handler sees it and knows no size limit
for files; this parser counts every byte as it arrives and stops at the limit (413), writing only
the ``bundle`` part, chunk by chunk, to a file beside the store (one rename away from it).
"""

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.errors import UnsupportedMediaError
from orchestrator.store import FieldProblem, RejectedInputError, TooLargeError

if TYPE_CHECKING:  # a TypedDict python-multipart declares for type checkers only
    from python_multipart.multipart import MultipartCallbacks

BUNDLE_FIELD = "bundle"
DRAIN_BYTES = 64 << 20
"""After refusing an upload, this much more of the body is read and dropped, so that the client,
still sending, reads our 413 instead of a reset connection; a longer body is cut off."""


def _refused(location: str, field: str, message: str) -> RejectedInputError:
    return RejectedInputError("the upload was refused", [FieldProblem(location, field, message)])


def _too_large(limit_bytes: int) -> TooLargeError:
    return TooLargeError(
        "the upload is too large",
        [FieldProblem("body", BUNDLE_FIELD, f"the upload is larger than the limit of {limit_bytes} bytes")],
    )


class _BundlePart:
    """Callbacks of the multipart parser: the ``bundle`` part goes to ``sink``, other parts nowhere."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._in_bundle = False
        self.seen = False
        self.complete = False

    def callbacks(self) -> "MultipartCallbacks":
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._in_bundle = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == BUNDLE_FIELD.encode():
            if self.seen:
                raise _refused("body", BUNDLE_FIELD, "the request holds more than one bundle")
            self._in_bundle = self.seen = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_bundle:
            self._sink.write(data[start:end])

    def _part_end(self) -> None:
        if self._in_bundle:
            self.complete = True
        self._in_bundle = False


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    dropped = 0
    async for chunk in chunks:
        dropped += len(chunk)
        if dropped > DRAIN_BYTES:
            return


async def receive_bundle(
    content_type: str | None,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
    incoming_dir: Path,
    limit_bytes: int,
) -> Path:
    """Stream the request's ``bundle`` part into a new file under ``incoming_dir``; its path.

    Raises ``TooLargeError`` as soon as the body passes ``limit_bytes`` (multipart framing
    included), ``RejectedInputError`` when the request is not a multipart form with one complete
    ``bundle`` file. The caller removes the file when done with it; on error it is removed here.
    """
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UnsupportedMediaError(
            "the upload was refused",
            [FieldProblem("header", "content-type", "expected multipart/form-data with a boundary")],
        )
    with contextlib.suppress(ValueError):
        if content_length is not None and int(content_length) > limit_bytes:
            await _drain(chunks)
            raise _too_large(limit_bytes)  # refused before a byte is kept
    path = incoming_dir / f"upload-{secrets.token_hex(8)}.part"
    try:
        part = await _stream_bundle(path, options[b"boundary"], chunks, limit_bytes)
        _check_complete(part)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _stream_bundle(
    path: Path, boundary: bytes, chunks: AsyncIterator[bytes], limit_bytes: int
) -> _BundlePart:
    with path.open("xb") as sink:
        part = _BundlePart(sink)
        parser = _parser(boundary, part)
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > limit_bytes:
                await _drain(chunks)
                raise _too_large(limit_bytes)
            _feed(parser, chunk)
    return part


def _parser(boundary: bytes, part: _BundlePart) -> MultipartParser:
    try:
        return MultipartParser(boundary, part.callbacks())
    except FormParserError as exc:
        raise _refused("header", "content-type", str(exc)) from exc


def _feed(parser: MultipartParser, chunk: bytes) -> None:
    try:
        parser.write(chunk)
    except FormParserError as exc:
        raise _refused("body", "", f"not a valid multipart body: {exc}") from exc


def _check_complete(part: _BundlePart) -> None:
    if not part.seen:
        raise _refused("body", BUNDLE_FIELD, "a file field named 'bundle' is required")
    if not part.complete:
        raise _refused("body", BUNDLE_FIELD, "the upload ended before the bundle did")
