#!/usr/bin/env python3
"""Generate content ("channel") files for the sample testbed_sensor module.

The sensor loads the file from /lib/firmware/testbed-sensor/channel.bin.
All integers are little endian.  Layout of format version 1::

    offset  size  header field
    0       4     magic              b"TBSC"
    4       2     format_version     1
    6       2     header_size        64
    8       4     content_version    e.g. 291
    12      4     template_id        template type this file instantiates
    16      4     field_count        number of template field descriptors (20)
    20      4     fields_offset      file offset of the field descriptors (64)
    24      4     rule_count         number of rules
    28      4     rules_offset       file offset of the first rule
    32      4     rules_size         size in bytes of the rule section
    36      4     flags              0
    40      24    channel            NUL-padded ASCII name, e.g. "channel-291"

    field descriptor (8 bytes), field_count of them at fields_offset:
    0  u8 input  (index into the sensor's 20 event inputs)
    1  u8 type   (1 = u64, 2 = hash, 3 = flags; informational)
    2  u16 flags
    4  u32 name_hash (FNV-1a 32 of the field name; informational)

    rule (8 + 16 * n bytes), rule_count of them back to back at rules_offset:
    0  u16 rule_id
    2  u8  action       (0 = log, 1 = alert)
    3  u8  field_count  (n: number of criteria that follow)
    4  u32 reserved
    8  n criteria of 16 bytes each:
         0 u8 field (template field index), 1 u8 op, 2 u16 reserved,
         4 u32 reserved, 8 u64 value
       ops: 0 any (wildcard), 1 eq, 2 ne, 3 mask (value & operand != 0),
            4 lt, 5 gt

The sensor trusts field_count, the offsets and all indices (that is the
deliberate defect).  A zero-filled file of the same length has
field_count == 0, which makes the sensor's matcher read through
ZERO_SIZE_PTR and oops the kernel.

Stdlib only.  Usable as a module::

    valid = build_valid_content(content_version=291, rule_count=12)
    bad = zero_filled(valid)

or from the command line::

    python make_content.py --out channel-291.bin [--content-version 291]
                           [--rules 12] [--zero-filled]
"""

import argparse
import hashlib
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"TBSC"
FORMAT_VERSION = 1
HEADER_SIZE = 64
FIELD_SIZE = 8
RULE_HEADER_SIZE = 8
CRITERION_SIZE = 16
DEFAULT_CONTENT_VERSION = 291
DEFAULT_RULE_COUNT = 12
#: Template type id of the "process event" template the sensor evaluates.
PROCESS_TEMPLATE_ID = 7
#: Number of input values the sensor supplies per event (and the number of
#: template fields it expects the content to define).
SENSOR_INPUTS = 20
MAX_RULES = 4096
MAX_CRITERIA_PER_RULE = 4

_HEADER = struct.Struct("<4sHHIIIIIIII24s")
_FIELD = struct.Struct("<BBHI")
_RULE = struct.Struct("<HBBI")
_CRITERION = struct.Struct("<BBHIQ")
assert _HEADER.size == HEADER_SIZE
assert _FIELD.size == FIELD_SIZE
assert _RULE.size == RULE_HEADER_SIZE
assert _CRITERION.size == CRITERION_SIZE

# Operators understood by the sensor.
OP_ANY, OP_EQ, OP_NE, OP_MASK, OP_LT, OP_GT = range(6)

# Field types (informational only).
FT_U64, FT_HASH, FT_FLAGS = 1, 2, 3

#: Names and types of the sensor's event inputs, in input-index order.
#: Mirrors tbs_build_event() in module/testbed_sensor.c.
FIELDS: tuple[tuple[str, int], ...] = (
    ("pid", FT_U64),
    ("tgid", FT_U64),
    ("ppid", FT_U64),
    ("uid", FT_U64),
    ("euid", FT_U64),
    ("gid", FT_U64),
    ("egid", FT_U64),
    ("session", FT_U64),
    ("comm_hash", FT_HASH),
    ("nodename_hash", FT_HASH),
    ("release_hash", FT_HASH),
    ("task_flags", FT_FLAGS),
    ("cap_effective_lo", FT_FLAGS),
    ("cap_effective_hi", FT_FLAGS),
    ("nice", FT_U64),
    ("cpu", FT_U64),
    ("uptime_ms", FT_U64),
    ("has_tty", FT_U64),
    ("kernel_thread", FT_U64),
    ("event_type", FT_U64),
)
assert len(FIELDS) == SENSOR_INPUTS


@dataclass(frozen=True)
class ContentHeader:
    """Decoded header of a content file."""

    magic: bytes
    format_version: int
    header_size: int
    content_version: int
    template_id: int
    field_count: int
    fields_offset: int
    rule_count: int
    rules_offset: int
    rules_size: int
    flags: int
    channel: str

    @property
    def looks_valid(self) -> bool:
        """What a careful parser would check before trusting the file."""
        return (
            self.magic == MAGIC
            and self.format_version == FORMAT_VERSION
            and self.header_size == HEADER_SIZE
            and self.field_count == SENSOR_INPUTS
            and self.rule_count > 0
        )


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a hash."""
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _det_u64(*parts: object) -> int:
    """Deterministic pseudo-random 64-bit value derived from ``parts``."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _rule_criteria(content_version: int, rule_index: int) -> list[tuple[int, int, int]]:
    """Deterministic (field, op, value) criteria for one rule.

    Rule 0 is a realistic "root started a kernel-module loader" rule that
    matches the sensor's own start event; the rest are generated.
    """
    if rule_index == 0:
        return [(3, OP_EQ, 0), (19, OP_EQ, 1)]  # uid == 0 && event_type == start
    n = 1 + rule_index % MAX_CRITERIA_PER_RULE
    ops = (OP_ANY, OP_EQ, OP_NE, OP_MASK, OP_LT, OP_GT)
    out: list[tuple[int, int, int]] = []
    for j in range(n):
        field = (rule_index * 7 + j * 3) % SENSOR_INPUTS
        op = ops[(rule_index + j) % len(ops)]
        value = _det_u64("tbs", content_version, rule_index, j)
        if op in (OP_LT, OP_GT):
            value &= 0xFFFF
        out.append((field, op, value))
    return out


def build_valid_content(
    content_version: int = DEFAULT_CONTENT_VERSION,
    rule_count: int = DEFAULT_RULE_COUNT,
    channel: str | None = None,
) -> bytes:
    """Return the bytes of a well-formed content file (deterministic)."""
    if not 0 <= content_version <= 0xFFFFFFFF:
        raise ValueError(f"content_version out of range: {content_version}")
    if not 1 <= rule_count <= MAX_RULES:
        raise ValueError(f"rule_count must be 1..{MAX_RULES}, got {rule_count}")
    name = channel if channel is not None else f"channel-{content_version}"
    name_b = name.encode("ascii")
    if len(name_b) > 23:
        raise ValueError(f"channel name too long (max 23 bytes): {name!r}")

    fields = b"".join(
        _FIELD.pack(index, ftype, 0, fnv1a32(fname.encode())) for index, (fname, ftype) in enumerate(FIELDS)
    )

    rules = bytearray()
    for i in range(rule_count):
        crit = _rule_criteria(content_version, i)
        action = 1 if i == 0 else i % 2
        rules += _RULE.pack(100 + i, action, len(crit), 0)
        for field, op, value in crit:
            rules += _CRITERION.pack(field, op, 0, 0, value)

    fields_offset = HEADER_SIZE
    rules_offset = fields_offset + len(fields)
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        HEADER_SIZE,
        content_version,
        PROCESS_TEMPLATE_ID,
        len(FIELDS),
        fields_offset,
        rule_count,
        rules_offset,
        len(rules),
        0,
        name_b.ljust(24, b"\0"),
    )
    return header + fields + bytes(rules)


def zero_filled(valid: bytes) -> bytes:
    """A file of the same length as ``valid`` containing only zero bytes."""
    return bytes(len(valid))


def parse_header(data: bytes) -> ContentHeader:
    """Decode the 64-byte header (no validation beyond the length)."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"content too short: {len(data)} bytes < {HEADER_SIZE}")
    (magic, fmt, hsize, cver, tid, nfields, foff, nrules, roff, rsize, flags, chan) = _HEADER.unpack_from(
        data, 0
    )
    return ContentHeader(
        magic=magic,
        format_version=fmt,
        header_size=hsize,
        content_version=cver,
        template_id=tid,
        field_count=nfields,
        fields_offset=foff,
        rule_count=nrules,
        rules_offset=roff,
        rules_size=rsize,
        flags=flags,
        channel=chan.rstrip(b"\0").decode("ascii", "replace"),
    )


def build_content(
    kind: str, content_version: int = DEFAULT_CONTENT_VERSION, rule_count: int = DEFAULT_RULE_COUNT
) -> bytes:
    """``kind`` is ``"good"`` or ``"zero-filled"``."""
    valid = build_valid_content(content_version=content_version, rule_count=rule_count)
    if kind == "good":
        return valid
    if kind == "zero-filled":
        return zero_filled(valid)
    raise ValueError(f"unknown content kind {kind!r} (expected good or zero-filled)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output file")
    parser.add_argument("--content-version", type=int, default=DEFAULT_CONTENT_VERSION)
    parser.add_argument(
        "--rules", type=int, default=DEFAULT_RULE_COUNT, help="number of rules (default %(default)s)"
    )
    parser.add_argument(
        "--zero-filled",
        action="store_true",
        help="write zeros of the same length as the valid file (crashes the sensor)",
    )
    args = parser.parse_args(argv)
    try:
        data = build_content(
            "zero-filled" if args.zero_filled else "good",
            content_version=args.content_version,
            rule_count=args.rules,
        )
    except ValueError as exc:
        parser.error(str(exc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
