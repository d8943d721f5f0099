"""Content variants, made from the sample sensor's real content file: every variant's bytes pinned by
sha256 for one seed (a changed generator is a changed test), count fields ±1 where the layout says,
and every entry that cannot be made refused by name."""

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.core.content_variants import (
    AS_SHIPPED,
    OVERSIZED_CAP,
    SIMPLE_VARIANTS,
    ContentLayout,
    CountField,
    expand_variants,
    generate,
    variant_label,
)
from orchestrator.core.errors import ConfigurationError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SEED = 20240719


def _make_content() -> ModuleType:
    name = "_testbed_sensor_make_content"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "samples" / "linux-sensor" / "make_content.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


MAKE_CONTENT = _make_content()
CHANNEL_291 = MAKE_CONTENT.build_valid_content()
# The layout the sample candidate declares (samples/linux-sensor/make_content.py CONTENT_SCHEMA).
SENSOR_LAYOUT = ContentLayout(
    header_size=64,
    count_fields=(
        CountField("field_count", 16, 4, "little"),
        CountField("rule_count", 24, 4, "little"),
        CountField("rules_size", 32, 4, "little"),
    ),
)

GOLDEN = {
    "as-shipped": (816, "281672ee8ca868516f024ca4a9c56c5eacd46fa39cb93e34f0b8bb0260584669"),
    "empty": (0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    "zero-filled": (816, "0645a4a67dcec462dc9f335bb0564e6e39bf12ea7e40cf8de81418210102c2d1"),
    "truncated-header": (64, "b350859badddf283a721f7d24ecd7f60e0427914ba3ce71865156d6bc868d7af"),
    "truncated-half": (408, "16f23d6fe19a168bbde8e07dd5bdf3f0f5203c16bec33c1065aaab27871ab6b2"),
    "truncated-minus-one": (815, "dcc290670c10e36ea62e23704706589b0e180f117c2735962f74c1f0c28ad506"),
    "bit-flips": (816, "1cce643f486cf983299ba5e17f8cbdd29b35b980cac4c67c0222196ad69bb9c5"),
    "trailing-junk": (1840, "a36bbcc194f885f4de4ae1e528b73d0cc5564833d6f0f4b80103c2283944df99"),
    "oversized": (66352, "3384650494a44f899993b61f180b85fa7a48974831891396015a2882c519f916"),
    "count-plus-one:field_count": (816, "e3661afcbe16f8b808d3f2fc7fc5cf77aeb6ce1e9dfe3284963bd7f881640197"),
    "count-plus-one:rule_count": (816, "5adf7587824a9bcb1de10987f6b96e2f19ec528879faef2808edf1977d4d8651"),
    "count-plus-one:rules_size": (816, "def3dea4b5b1bf444f6b3e7ec292c51f5270c3466d4c186e690ecb2428a9f2e5"),
    "count-minus-one:field_count": (816, "6cbc09c303e9ff2a3d60b218abe6ae0388a26f7d02ca4c95e9785b2eed2bc4a6"),
    "count-minus-one:rule_count": (816, "05c05e81ddf7ea3c71b3703a3d24b42934088366a5431780194ed2537bb58f49"),
    "count-minus-one:rules_size": (816, "031166b1ec8e836a9f82d63ae64db6a1d452364af4123b283af1263947eb4748"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_sample_content_is_the_one_the_goldens_were_made_from():
    # If this fails, make_content.py changed, not the generator: re-derive GOLDEN from the new file.
    assert (len(CHANNEL_291), sha256(CHANNEL_291)) == GOLDEN[AS_SHIPPED]


def test_every_variant_is_covered_by_a_golden():
    every = expand_variants([*SIMPLE_VARIANTS, "count-plus-one", "count-minus-one"], SENSOR_LAYOUT)
    assert sorted(every) == sorted(GOLDEN)


@pytest.mark.parametrize("variant", sorted(GOLDEN))
def test_golden_digest_per_variant(variant):
    made = generate(CHANNEL_291, variant, seed=SEED, layout=SENSOR_LAYOUT)
    assert (len(made), sha256(made)) == GOLDEN[variant]


@pytest.mark.parametrize("variant", sorted(GOLDEN))
def test_same_input_same_bytes(variant):
    first = generate(CHANNEL_291, variant, seed=SEED, layout=SENSOR_LAYOUT)
    again = generate(bytes(CHANNEL_291), variant, seed=SEED, layout=SENSOR_LAYOUT)
    assert first == again


@pytest.mark.parametrize("variant", ["bit-flips", "trailing-junk"])
def test_the_seed_chooses_the_random_part(variant):
    one = generate(CHANNEL_291, variant, seed=1, layout=SENSOR_LAYOUT)
    other = generate(CHANNEL_291, variant, seed=2, layout=SENSOR_LAYOUT)
    assert one != other
    assert len(one) == len(other)


@pytest.mark.parametrize(
    "variant", ["zero-filled", "truncated-half", "oversized", "count-plus-one:rule_count"]
)
def test_variants_without_randomness_ignore_the_seed(variant):
    assert generate(CHANNEL_291, variant, seed=1, layout=SENSOR_LAYOUT) == generate(
        CHANNEL_291, variant, seed=2, layout=SENSOR_LAYOUT
    )


def test_zero_filled_keeps_the_length_and_parses_as_the_incident_did():
    made = generate(CHANNEL_291, "zero-filled", seed=SEED, layout=None)
    assert made == bytes(816)
    header = MAKE_CONTENT.parse_header(made)
    assert (header.field_count, header.rule_count, header.looks_valid) == (0, 0, False)


@pytest.mark.parametrize(
    ("variant", "layout", "expected"),
    [
        ("truncated-header", SENSOR_LAYOUT, CHANNEL_291[:64]),
        ("truncated-header", ContentLayout(header_size=40), CHANNEL_291[:40]),
        ("truncated-header", None, CHANNEL_291[:64]),  # no layout: the first 64 bytes
        ("truncated-header", ContentLayout(header_size=None), CHANNEL_291[:64]),
        ("truncated-half", None, CHANNEL_291[:408]),
        ("truncated-minus-one", None, CHANNEL_291[:815]),
        ("empty", None, b""),
        (AS_SHIPPED, None, CHANNEL_291),
    ],
)
def test_truncations(variant, layout, expected):
    assert generate(CHANNEL_291, variant, seed=SEED, layout=layout) == expected


def _differing_bits(a: bytes, b: bytes) -> list[int]:
    return [
        i * 8 + bit
        for i, (x, y) in enumerate(zip(a, b, strict=True))
        for bit in range(8)
        if (x ^ y) >> bit & 1
    ]


@pytest.mark.parametrize(("layout", "window"), [(None, 64), (ContentLayout(header_size=16), 16)])
def test_bit_flips_flip_eight_distinct_bits_in_the_header(layout, window):
    for seed in range(20):
        made = generate(CHANNEL_291, "bit-flips", seed=seed, layout=layout)
        flipped = _differing_bits(CHANNEL_291, made)
        assert len(flipped) == 8
        assert max(flipped) < window * 8


def test_bit_flips_on_tiny_and_empty_files():
    assert generate(b"", "bit-flips", seed=SEED, layout=None) == b""
    one_byte = generate(b"\x00", "bit-flips", seed=SEED, layout=None)
    assert one_byte == b"\xff"  # eight distinct flips in an eight-bit window: every bit


def test_trailing_junk_appends_to_the_untouched_file():
    made = generate(CHANNEL_291, "trailing-junk", seed=SEED, layout=None)
    assert made[:816] == CHANNEL_291
    assert len(made) == 816 + 1024
    assert made[816:] != bytes(1024)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (816, 816 + 65536),  # small files grow by at least 64 KiB
        (8192, 16 * 8192),  # 16x
        (1 << 20, OVERSIZED_CAP),  # 16 MiB would be too much: capped
        (5 << 20, (5 << 20) + 65536),  # already beyond the cap: still bigger than the file
    ],
)
def test_oversized_repeats_the_file_well_beyond_its_size(size, expected):
    data = (CHANNEL_291 * (size // 816 + 1))[:size]
    made = generate(data, "oversized", seed=SEED, layout=None)
    assert len(made) == expected
    assert made[:size] == data
    assert made[size : 2 * size] == data[: len(made) - size]  # repeated, not padded with zeros


def test_oversized_from_nothing_is_seeded_bytes():
    made = generate(b"", "oversized", seed=SEED, layout=None)
    assert len(made) == 65536
    assert made == generate(b"", "oversized", seed=SEED, layout=None)
    assert made != bytes(65536)


@pytest.mark.parametrize(
    ("variant", "field", "expected"),
    [
        ("count-plus-one:field_count", "field_count", 21),
        ("count-minus-one:field_count", "field_count", 19),
        ("count-plus-one:rule_count", "rule_count", 13),
        ("count-minus-one:rule_count", "rule_count", 11),
        ("count-plus-one:rules_size", "rules_size", 593),
        ("count-minus-one:rules_size", "rules_size", 591),
    ],
)
def test_count_fields_move_by_one_at_their_offsets(variant, field, expected):
    made = generate(CHANNEL_291, variant, seed=SEED, layout=SENSOR_LAYOUT)
    assert getattr(MAKE_CONTENT.parse_header(made), field) == expected
    offset = next(f.offset for f in SENSOR_LAYOUT.count_fields if f.name == field)
    assert made[:offset] == CHANNEL_291[:offset]
    assert made[offset + 4 :] == CHANNEL_291[offset + 4 :]


@pytest.mark.parametrize(
    ("size", "byteorder", "stored", "variant", "result"),
    [
        (1, "little", b"\x05", "count-plus-one:n", b"\x06"),
        (1, "little", b"\xff", "count-plus-one:n", b"\x00"),  # wraps at the field's width
        (1, "big", b"\x00", "count-minus-one:n", b"\xff"),
        (2, "little", b"\xff\x00", "count-plus-one:n", b"\x00\x01"),
        (2, "big", b"\x00\xff", "count-plus-one:n", b"\x01\x00"),
        (2, "big", b"\x01\x00", "count-minus-one:n", b"\x00\xff"),
        (4, "little", b"\x00\x00\x00\x00", "count-minus-one:n", b"\xff\xff\xff\xff"),
        (4, "big", b"\x00\x00\x01\xff", "count-plus-one:n", b"\x00\x00\x02\x00"),
        (8, "little", b"\xff" * 8, "count-plus-one:n", b"\x00" * 8),
        (8, "big", b"\x00" * 7 + b"\x10", "count-minus-one:n", b"\x00" * 7 + b"\x0f"),
    ],
)
def test_count_field_widths_and_byte_orders(size, byteorder, stored, variant, result):
    layout = ContentLayout(header_size=None, count_fields=(CountField("n", 3, size, byteorder),))
    data = b"abc" + stored + b"xyz"
    assert generate(data, variant, seed=SEED, layout=layout) == b"abc" + result + b"xyz"


def test_expansion_keeps_the_order_and_collapses_repeats():
    assert expand_variants(
        [
            "as-shipped",
            "count-plus-one",
            "zero-filled",
            "count-plus-one:rule_count",
            "count-minus-one:rules_size",
        ],
        SENSOR_LAYOUT,
    ) == (
        "as-shipped",
        "count-plus-one:field_count",
        "count-plus-one:rule_count",
        "count-plus-one:rules_size",
        "zero-filled",
        "count-minus-one:rules_size",
    )


def test_simple_variants_need_no_layout():
    assert expand_variants(list(SIMPLE_VARIANTS), None) == tuple(SIMPLE_VARIANTS)


@pytest.mark.parametrize(
    ("requested", "layout", "named"),
    [
        (["as-shipped", "zero-filed"], SENSOR_LAYOUT, ["entry 1 ('zero-filed'): unknown content variant"]),
        (["count-plus-one"], None, ["entry 0 ('count-plus-one'): count variants need the content's layout"]),
        (
            ["count-minus-one:rule_count"],
            ContentLayout(header_size=64),
            ["entry 0 ('count-minus-one:rule_count'): count variants need"],
        ),
        (
            ["count-plus-one:record_count"],
            SENSOR_LAYOUT,
            [
                "entry 0 ('count-plus-one:record_count'): the content's layout declares no count field "
                "'record_count' (declared: field_count, rule_count, rules_size)"
            ],
        ),
        (["Empty"], None, ["entry 0 ('Empty'): unknown content variant"]),
        (["count-plus-two:rule_count"], SENSOR_LAYOUT, ["entry 0 ('count-plus-two:rule_count'): unknown"]),
        (
            ["bogus", "empty", "count-plus-one:nope"],
            SENSOR_LAYOUT,
            ["entry 0 ('bogus')", "entry 2 ('count-plus-one:nope')"],  # every problem, not the first
        ),
    ],
)
def test_refusals_name_the_entry(requested, layout, named):
    with pytest.raises(ConfigurationError) as raised:
        expand_variants(requested, layout)
    for text in named:
        assert text in str(raised.value)


def test_count_fields_whose_labels_collide_are_refused():
    layout = ContentLayout(count_fields=(CountField("a_b", 0, 1), CountField("a-b", 1, 1)))
    with pytest.raises(
        ConfigurationError, match=r"'count-plus-one:a_b' and 'count-plus-one:a-b' would share"
    ):
        expand_variants(["count-plus-one"], layout)


@pytest.mark.parametrize(
    ("variant", "layout", "message"),
    [
        ("zero-filed", SENSOR_LAYOUT, "content variant 'zero-filed': not a concrete variant"),
        ("count-plus-one", SENSOR_LAYOUT, "content variant 'count-plus-one': not a concrete variant"),
        ("count-plus-one:rule_count", None, "declares no count field 'rule_count'"),
        ("count-minus-one:other", SENSOR_LAYOUT, "declares no count field 'other'"),
    ],
)
def test_generate_refuses_what_it_cannot_make(variant, layout, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        generate(CHANNEL_291, variant, seed=SEED, layout=layout)


def test_a_count_field_beyond_the_end_of_the_file_is_refused_by_name():
    with pytest.raises(
        ConfigurationError, match=r"count field 'rule_count' \(offset 24, 4 bytes\) lies beyond"
    ):
        generate(CHANNEL_291[:26], "count-plus-one:rule_count", seed=SEED, layout=SENSOR_LAYOUT)


@pytest.mark.parametrize(
    ("variant", "label"),
    [
        ("as-shipped", "as-shipped"),
        ("truncated-minus-one", "truncated-minus-one"),
        ("count-plus-one:rule_count", "count-plus-one.rule-count"),
        ("count-minus-one:Header.Size", "count-minus-one.header.size"),
        ("../../etc/passwd x", "..-..-etc-passwd-x"),
    ],
)
def test_labels_are_safe_in_cell_ids_and_file_names(variant, label):
    assert variant_label(variant) == label


def test_every_expanded_label_uses_only_the_safe_alphabet():
    every = expand_variants([*SIMPLE_VARIANTS, "count-plus-one", "count-minus-one"], SENSOR_LAYOUT)
    assert all(re.fullmatch(r"[a-z0-9.+-]+", variant_label(variant)) for variant in every)
