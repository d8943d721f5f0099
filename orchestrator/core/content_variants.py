"""Content variants: malformed versions of a candidate's content file, generated from it.

The July 2024 outage was a content file that was malformed (zero-filled, or one input field short
of what the rule expected). A sensor must survive whatever bytes reach it: the machine must boot and
stay up, even if the sensor rejects the file. So besides the content as shipped, a matrix can ask
for generated variants of it; this module makes them.

Everything here is pure and reproducible: the same (bytes, variant, seed) gives the same bytes on
every machine and every Python version. Randomness comes from SHAKE-256 keyed by the seed and the
variant name, never from ``random`` (whose streams Python does not promise to keep).

Count variants need the layout the candidate declares for its content (``schema:`` in
candidate.yaml): ``count-plus-one:<field>`` adds one to a declared count field, wrapping at the
field's width, so the file claims one record more (or fewer) than it holds.
"""

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrator.core.errors import ConfigurationError

__all__ = [
    "AS_SHIPPED",
    "COUNT_VARIANTS",
    "DEFAULT_HEADER_SIZE",
    "OVERSIZED_CAP",
    "SIMPLE_VARIANTS",
    "ContentLayout",
    "CountField",
    "expand_variants",
    "generate",
    "variant_label",
]

AS_SHIPPED = "as-shipped"
DEFAULT_HEADER_SIZE = 64  # truncated-header without a declared layout: most binary headers fit in it
BIT_FLIPS = 8  # bits flipped by bit-flips, all in the header window
TRAILING_JUNK_SIZE = 1024  # bytes appended by trailing-junk
OVERSIZED_FACTOR = 16  # oversized: the file repeated to this many times its size ...
OVERSIZED_CAP = 4 << 20  # ... but no more than 4 MiB (a guest's firmware directory is not a disk test)
OVERSIZED_MIN_GROWTH = 64 << 10  # ... and at least 64 KiB beyond the original, however small or large

SIMPLE_VARIANTS: dict[str, str] = {
    AS_SHIPPED: "the content file exactly as the candidate ships it",
    "empty": "a file of zero bytes",
    "zero-filled": "zeros, as long as the original",
    "truncated-header": "only the declared header (without a declared layout: the first 64 bytes)",
    "truncated-half": "the first half of the file",
    "truncated-minus-one": "the file without its last byte",
    "bit-flips": f"{BIT_FLIPS} bits flipped in the header (first 64 bytes without a layout), by the seed",
    "trailing-junk": f"{TRAILING_JUNK_SIZE} seeded random bytes appended",
    "oversized": f"the file repeated to {OVERSIZED_FACTOR}x its size (at most 4 MiB, at least 64 KiB more)",
}
"""Variants that need nothing but the bytes, with what each one is (for people and docs)."""

COUNT_VARIANTS: dict[str, int] = {"count-plus-one": 1, "count-minus-one": -1}
"""Variants that change a declared count field, and by how much."""

_LABEL_UNSAFE = re.compile(r"[^a-z0-9.+-]")


@dataclass(frozen=True)
class CountField:
    """A number in the content's header that says how many records (or bytes) follow."""

    name: str
    offset: int
    size: int  # bytes: 1, 2, 4 or 8
    byteorder: Literal["little", "big"] = "little"


@dataclass(frozen=True)
class ContentLayout:
    """What the candidate declares about its content file's layout."""

    header_size: int | None = None
    count_fields: tuple[CountField, ...] = ()

    def field(self, name: str) -> CountField | None:
        return next((f for f in self.count_fields if f.name == name), None)


def variant_label(variant: str) -> str:
    """The variant as it may appear in cell ids and file names: lower case, [a-z0-9.+-] only.

    ``count-plus-one:rule_count`` becomes ``count-plus-one.rule-count``.
    """
    return _LABEL_UNSAFE.sub("-", variant.lower().replace(":", "."))


def expand_variants(requested: Sequence[str], layout: ContentLayout | None) -> tuple[str, ...]:
    """The matrix's ``content_variants`` entries as the concrete variants to run, in order.

    ``count-plus-one`` alone becomes one variant per declared count field. Entries that name the
    same variant twice collapse into one. Every entry that cannot be generated is refused, all of
    them in one ConfigurationError that names each offending entry.
    """
    expanded: list[str] = []
    problems: list[str] = []
    for index, entry in enumerate(requested):
        try:
            concrete = _expand_entry(entry, layout)
        except ValueError as exc:
            problems.append(f"entry {index} ({entry!r}): {exc}")
            continue
        expanded += [variant for variant in concrete if variant not in expanded]
    problems += _label_collisions(expanded)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return tuple(expanded)


def _expand_entry(entry: str, layout: ContentLayout | None) -> list[str]:
    if entry in SIMPLE_VARIANTS:
        return [entry]
    kind, separator, field_name = entry.partition(":")
    if kind not in COUNT_VARIANTS:
        known = ", ".join([*SIMPLE_VARIANTS, *(f"{name}[:<field>]" for name in COUNT_VARIANTS)])
        raise ValueError(f"unknown content variant (known: {known})")
    if layout is None or not layout.count_fields:
        raise ValueError(
            "count variants need the content's layout: declare schema.count_fields on the content "
            "artifact in candidate.yaml"
        )
    if not separator:
        return [f"{kind}:{f.name}" for f in layout.count_fields]
    if layout.field(field_name) is None:
        declared = ", ".join(f.name for f in layout.count_fields)
        raise ValueError(
            f"the content's layout declares no count field {field_name!r} (declared: {declared})"
        )
    return [entry]


def _label_collisions(variants: Sequence[str]) -> list[str]:
    """Two variants whose labels coincide would give two cells one id (e.g. fields a_b and a-b)."""
    by_label: dict[str, list[str]] = {}
    for variant in variants:
        by_label.setdefault(variant_label(variant), []).append(variant)
    return [
        f"variants {' and '.join(repr(v) for v in same)} would share the label {label!r}: "
        "rename a count field"
        for label, same in by_label.items()
        if len(same) > 1
    ]


def generate(data: bytes, variant: str, *, seed: int, layout: ContentLayout | None) -> bytes:
    """The bytes of ``variant`` made from ``data`` (a concrete variant, as ``expand_variants`` gives).

    Raises ConfigurationError for a variant that cannot be made: unknown, a count variant without
    a declared layout or naming an undeclared field, or a count field beyond the end of ``data``.
    """
    maker = _MAKERS.get(variant)
    if maker is not None:
        return maker(data, _Context(variant, seed, layout))
    kind, _, field_name = variant.partition(":")
    if kind not in COUNT_VARIANTS or not field_name:
        raise ConfigurationError(f"content variant {variant!r}: not a concrete variant this testbed can make")
    count_field = None if layout is None else layout.field(field_name)
    if count_field is None:
        raise ConfigurationError(
            f"content variant {variant!r}: the content's layout declares no count field {field_name!r}"
        )
    return _shift_count(data, count_field, COUNT_VARIANTS[kind], variant)


@dataclass(frozen=True)
class _Context:
    variant: str
    seed: int
    layout: ContentLayout | None

    @property
    def header_size(self) -> int:
        declared = None if self.layout is None else self.layout.header_size
        return declared or DEFAULT_HEADER_SIZE

    def random_bytes(self, count: int) -> bytes:
        """``count`` bytes determined by the seed and the variant alone."""
        key = f"endpoint-testbed/content-variant/{self.seed}/{self.variant}".encode()
        return hashlib.shake_256(key).digest(count) if count else b""


def _bit_flips(data: bytes, context: _Context) -> bytes:
    window_bits = min(len(data), context.header_size) * 8
    flips = min(BIT_FLIPS, window_bits)
    positions: list[int] = []
    stream = context.random_bytes(4 * 64 * BIT_FLIPS)  # far more draws than the flips can need
    for at in range(0, len(stream), 4):
        if len(positions) == flips:
            break
        # 32-bit draws modulo a window of at most 2**23 bits: the bias is far below anything that matters.
        position = int.from_bytes(stream[at : at + 4], "little") % window_bits
        if position not in positions:  # a bit flipped twice would be no flip at all
            positions.append(position)
    flipped = bytearray(data)
    for position in positions:
        flipped[position // 8] ^= 1 << (position % 8)
    return bytes(flipped)


def _oversized(data: bytes, context: _Context) -> bytes:
    target = max(min(OVERSIZED_FACTOR * len(data), OVERSIZED_CAP), len(data) + OVERSIZED_MIN_GROWTH)
    if not data:
        return context.random_bytes(target)
    return (data * (target // len(data) + 1))[:target]


def _shift_count(data: bytes, count_field: CountField, delta: int, variant: str) -> bytes:
    end = count_field.offset + count_field.size
    if end > len(data):
        raise ConfigurationError(
            f"content variant {variant!r}: count field {count_field.name!r} (offset {count_field.offset}, "
            f"{count_field.size} bytes) lies beyond the end of the content file ({len(data)} bytes)"
        )
    old = int.from_bytes(data[count_field.offset : end], count_field.byteorder)
    new = (old + delta) % (1 << (8 * count_field.size))  # wraps like the field's own unsigned type
    return data[: count_field.offset] + new.to_bytes(count_field.size, count_field.byteorder) + data[end:]


_MAKERS: dict[str, Callable[[bytes, _Context], bytes]] = {
    AS_SHIPPED: lambda data, _: data,
    "empty": lambda _data, _: b"",
    "zero-filled": lambda data, _: bytes(len(data)),
    "truncated-header": lambda data, context: data[: context.header_size],
    "truncated-half": lambda data, _: data[: len(data) // 2],
    "truncated-minus-one": lambda data, _: data[:-1],
    "bit-flips": _bit_flips,
    "trailing-junk": lambda data, context: data + context.random_bytes(TRAILING_JUNK_SIZE),
    "oversized": _oversized,
}
assert _MAKERS.keys() == SIMPLE_VARIANTS.keys()
