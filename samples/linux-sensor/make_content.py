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
    4  u16 event        (0 = scan: once at sensor start, on the template's
                         fields; 1 = exec: at every exec, on string inputs)
    6  u16 reserved
    8  n criteria of 16 bytes each:
         0 u8 field, 1 u8 op, 2 u16 reserved, 4 u32 reserved, 8 u64 value
       scan rules: field = template field index (0..19)
       exec rules: field = string input (0 comm, 1 filename, 2 parent comm),
                   compared by FNV-1a 32 hash (ops any, eq, ne)
       ops: 0 any (wildcard), 1 eq, 2 ne, 3 mask (value & operand != 0),
            4 lt, 5 gt

    header flags: bit 0 = compound rules (more than 4 criteria per rule),
    a content feature introduced with sensor 1.1.0.

Content kinds (``build_content``):

    good                 version 291: 20 fields, 12 scan rules (format 1)
    zero-filled          zeros, as long as good
    new                  version 292: uses compound rules (up to 15 criteria);
                         sensor 1.0.0 overruns a stack buffer, 1.1.0 handles it
    activity             version 293: good + exec rule 200 matching a process
                         named testbed-trigger
    activity-malformed   version 293, but rule 200's second criterion reads
                         exec input 3, which no sensor supplies: the sensor
                         faults when testbed-trigger runs, not before
    incidents            version 294: new's compound rules + activity-malformed's
                         rule 200: the content of the release the incidents
                         matrix (examples/incidents.yaml) tests

The sensor trusts field_count, the offsets and all indices (that is the
deliberate defect).  A zero-filled file of the same length has
field_count == 0, which makes the sensor's matcher read through
ZERO_SIZE_PTR and oops the kernel.

Stdlib only.  Usable as a module::

    valid = build_valid_content(content_version=291, rule_count=12)
    bad = zero_filled(valid)
    new = build_content("new")

or from the command line::

    python make_content.py --out channel-291.bin [--kind good] [--content-version 291]
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
#: Criteria per rule in format 1, what sensor 1.0.0 was written for.
MAX_CRITERIA_PER_RULE = 4
#: Criteria per rule a sensor >= 1.1.0 accepts (compound rules).
MAX_COMPOUND_CRITERIA = 16
#: Header flag: the file uses compound rules (sensor >= 1.1.0).
FLAG_COMPOUND_RULES = 0x1
#: When a rule is evaluated.
EVENT_SCAN, EVENT_EXEC = 0, 1
#: String inputs of an exec event, in input-index order (module/match.c).
EXEC_INPUTS = ("comm", "filename", "parent_comm")
#: The process name the activity rule matches (15 bytes: a whole task comm).
TRIGGER_NAME = "testbed-trigger"
ACTIVITY_RULE_ID = 200

#: Default content version of each kind.
CONTENT_KINDS: dict[str, int] = {
    "good": 291,
    "zero-filled": 291,
    "new": 292,
    "activity": 293,
    "activity-malformed": 293,
    "incidents": 294,
}

#: The layout a candidate declares for its content (candidate.yaml ``schema:``), so that the
#: testbed's count-field variants can target the header's counts.
CONTENT_SCHEMA: dict[str, object] = {
    "header_size": 64,
    "count_fields": [
        {"name": "field_count", "offset": 16, "size": 4},
        {"name": "rule_count", "offset": 24, "size": 4},
        {"name": "rules_size", "offset": 32, "size": 4},
    ],
}

_HEADER = struct.Struct("<4sHHIIIIIIII24s")
_FIELD = struct.Struct("<BBHI")
_RULE = struct.Struct("<HBBHH")
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


Criterion = tuple[int, int, int]  # (field, op, value)


@dataclass(frozen=True)
class Rule:
    """One rule as it goes into the file."""

    rule_id: int
    action: int
    criteria: tuple[Criterion, ...]
    event: int = EVENT_SCAN


def _rule_criteria(content_version: int, rule_index: int, count: int | None = None) -> list[Criterion]:
    """Deterministic (field, op, value) criteria for one scan rule.

    Rule 0 is a realistic "root started a kernel-module loader" rule that
    matches the sensor's own start event; the rest are generated.
    """
    if rule_index == 0:
        return [(3, OP_EQ, 0), (19, OP_EQ, 1)]  # uid == 0 && event_type == start
    n = 1 + rule_index % MAX_CRITERIA_PER_RULE if count is None else count
    ops = (OP_ANY, OP_EQ, OP_NE, OP_MASK, OP_LT, OP_GT)
    out: list[Criterion] = []
    for j in range(n):
        field = (rule_index * 7 + j * 3) % SENSOR_INPUTS
        op = ops[(rule_index + j) % len(ops)]
        value = _det_u64("tbs", content_version, rule_index, j)
        if op in (OP_LT, OP_GT):
            value &= 0xFFFF
        out.append((field, op, value))
    return out


def _compound_criteria_count(rule_index: int) -> int | None:
    """Every third rule from rule 1 on is a compound rule of 5..16 criteria (rule 1 has 12)."""
    if rule_index % 3 != 1:
        return None
    return 5 + (rule_index * 7) % 12


def _scan_rules(content_version: int, rule_count: int, compound: bool) -> list[Rule]:
    rules = []
    for i in range(rule_count):
        count = _compound_criteria_count(i) if compound and i else None
        crit = _rule_criteria(content_version, i, count)
        rules.append(Rule(100 + i, 1 if i == 0 else i % 2, tuple(crit)))
    return rules


def activity_rule(malformed: bool = False) -> Rule:
    """Exec rule 200: a process named testbed-trigger (with any filename) starts.

    The malformed rule was written for a template with a 4th exec input (the
    command line): its second criterion reads input 3, which no sensor supplies.
    The sensor only evaluates it after the first criterion matched, i.e. when a
    process named testbed-trigger runs.
    """
    second_input = len(EXEC_INPUTS) if malformed else EXEC_INPUTS.index("filename")
    return Rule(
        ACTIVITY_RULE_ID,
        1,
        ((0, OP_EQ, fnv1a32(TRIGGER_NAME.encode())), (second_input, OP_NE, fnv1a32(b""))),
        event=EVENT_EXEC,
    )


def assemble_content(
    content_version: int, rules: Sequence[Rule], *, flags: int = 0, channel: str | None = None
) -> bytes:
    """Header, the 20 field descriptors, then the rules back to back."""
    if not 0 <= content_version <= 0xFFFFFFFF:
        raise ValueError(f"content_version out of range: {content_version}")
    if not 1 <= len(rules) <= MAX_RULES:
        raise ValueError(f"rule_count must be 1..{MAX_RULES}, got {len(rules)}")
    name = channel if channel is not None else f"channel-{content_version}"
    name_b = name.encode("ascii")
    if len(name_b) > 23:
        raise ValueError(f"channel name too long (max 23 bytes): {name!r}")

    fields = b"".join(
        _FIELD.pack(index, ftype, 0, fnv1a32(fname.encode())) for index, (fname, ftype) in enumerate(FIELDS)
    )
    body = bytearray()
    for rule in rules:
        body += _RULE.pack(rule.rule_id, rule.action, len(rule.criteria), rule.event, 0)
        for field, op, value in rule.criteria:
            body += _CRITERION.pack(field, op, 0, 0, value)

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
        len(rules),
        rules_offset,
        len(body),
        flags,
        name_b.ljust(24, b"\0"),
    )
    return header + fields + bytes(body)


def build_valid_content(
    content_version: int = DEFAULT_CONTENT_VERSION,
    rule_count: int = DEFAULT_RULE_COUNT,
    channel: str | None = None,
) -> bytes:
    """Return the bytes of a well-formed format 1 content file (deterministic)."""
    if not 1 <= rule_count <= MAX_RULES:
        raise ValueError(f"rule_count must be 1..{MAX_RULES}, got {rule_count}")
    return assemble_content(content_version, _scan_rules(content_version, rule_count, False), channel=channel)


def build_new_content(content_version: int = 292, rule_count: int = DEFAULT_RULE_COUNT) -> bytes:
    """Content using compound rules, the feature introduced with sensor 1.1.0."""
    if not 2 <= rule_count <= MAX_RULES:
        raise ValueError(f"rule_count must be 2..{MAX_RULES} for compound content, got {rule_count}")
    rules = _scan_rules(content_version, rule_count, True)
    return assemble_content(content_version, rules, flags=FLAG_COMPOUND_RULES)


def build_activity_content(
    content_version: int = 293,
    rule_count: int = DEFAULT_RULE_COUNT,
    malformed: bool = False,
    compound: bool = False,
) -> bytes:
    """``rule_count`` scan rules as in good content (``compound``: as in new content), plus exec
    rule 200 (see ``activity_rule``)."""
    least = 2 if compound else 1
    if not least <= rule_count < MAX_RULES:
        raise ValueError(
            f"rule_count must be {least}..{MAX_RULES - 1} with the activity rule, got {rule_count}"
        )
    rules = [*_scan_rules(content_version, rule_count, compound), activity_rule(malformed)]
    return assemble_content(content_version, rules, flags=FLAG_COMPOUND_RULES if compound else 0)


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


def parse_rules(data: bytes) -> list[Rule]:
    """Decode the rules of a well-formed file (for tests and people; trusts the header)."""
    header = parse_header(data)
    rules, at = [], header.rules_offset
    for _ in range(header.rule_count):
        rule_id, action, count, event, _reserved = _RULE.unpack_from(data, at)
        at += RULE_HEADER_SIZE
        criteria = []
        for _j in range(count):
            field, op, _r0, _r1, value = _CRITERION.unpack_from(data, at)
            criteria.append((field, op, value))
            at += CRITERION_SIZE
        rules.append(Rule(rule_id, action, tuple(criteria), event))
    return rules


def build_content(
    kind: str, content_version: int | None = None, rule_count: int = DEFAULT_RULE_COUNT
) -> bytes:
    """``kind`` is one of ``CONTENT_KINDS``; the version defaults to the kind's."""
    if kind not in CONTENT_KINDS:
        raise ValueError(f"unknown content kind {kind!r} (expected one of {', '.join(CONTENT_KINDS)})")
    cver = CONTENT_KINDS[kind] if content_version is None else content_version
    if kind == "good":
        return build_valid_content(content_version=cver, rule_count=rule_count)
    if kind == "zero-filled":
        return zero_filled(build_valid_content(content_version=cver, rule_count=rule_count))
    if kind == "new":
        return build_new_content(content_version=cver, rule_count=rule_count)
    if kind == "incidents":
        return build_activity_content(cver, rule_count, malformed=True, compound=True)
    return build_activity_content(cver, rule_count, malformed=kind == "activity-malformed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output file")
    parser.add_argument(
        "--kind", choices=tuple(CONTENT_KINDS), default="good", help="content kind (default %(default)s)"
    )
    parser.add_argument(
        "--content-version", type=int, default=None, help="content version (default: the kind's)"
    )
    parser.add_argument(
        "--rules", type=int, default=DEFAULT_RULE_COUNT, help="number of scan rules (default %(default)s)"
    )
    parser.add_argument(
        "--zero-filled",
        action="store_true",
        help="same as --kind zero-filled: zeros of the same length as the valid file (crashes the sensor)",
    )
    args = parser.parse_args(argv)
    if args.zero_filled and args.kind not in ("good", "zero-filled"):
        parser.error("--zero-filled and --kind are exclusive")
    try:
        data = build_content(
            "zero-filled" if args.zero_filled else args.kind,
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
