"""Matrix YAML → validated spec → whole run plan, checked before any VM exists."""

from dataclasses import replace

import pytest

from orchestrator.core.content_variants import ContentLayout, CountField
from orchestrator.core.matrix import (
    CandidateFacts,
    cell_id_for,
    control_twin,
    parse_matrix,
    plan_as_yaml,
    plan_run,
)
from orchestrator.core.plan import CrashPolicy, ImageFacts, InstallStep, Resources, Timeouts
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

IMAGES = {
    "debian12-kernel-n": ImageFacts("debian12-kernel-n", "linux", "debian-12", "6.1.0-56-amd64", "a" * 64),
    "debian12-kernel-n1": ImageFacts("debian12-kernel-n1", "linux", "debian-12", "6.1.0-55-amd64", "b" * 64),
    "win11-23h2": ImageFacts("win11-23h2", "windows", "11-23h2", "10.0.22631", "c" * 64),
}
CANDIDATE = CandidateFacts(
    name="sensor",
    version="7.1.0",
    os_families=frozenset({"linux"}),
    artifact_digests={"sensor-linux": "d" * 64, "channel-291": "e" * 64},
)
PRODUCTS = frozenset({"dlp", "av"})


def matrix(body: str) -> str:
    return "name: gate\n" + body


def plan_of(body: str, images=None, products=PRODUCTS):
    return plan_run(parse_matrix(matrix(body)), IMAGES if images is None else images, CANDIDATE, products)


def problems_of(body: str, images=None, products=PRODUCTS) -> str:
    with pytest.raises(ConfigurationError) as caught:
        plan_of(body, images, products)
    return str(caught.value)


# -- parse_matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("name: [gate\nimages: [a]\n", ["matrices/gate.yaml", "not valid YAML"]),
        ("- debian12-kernel-n\n", ["matrices/gate.yaml", "expected a mapping at the top level, got list"]),
        ("just a string\n", ["expected a mapping at the top level, got str"]),
        ("", ["expected a mapping at the top level, got NoneType"]),
        ("name: gate\nimages: [a]\ncolour: red\n", ["colour: Extra inputs are not permitted"]),
        ("name: gate\nimages: [a]\nreboots: 21\n", ["reboots: Input should be less than or equal to 20"]),
        ("name: gate\nimages: [a]\nreboots: 0\n", ["reboots: Input should be greater than or equal to 1"]),
        ("name: gate\nimages: [a]\nreboots: two\n", ["reboots: Input should be a valid integer"]),
        ("name: gate\nimages: [a, b, a, b]\n", ["images: Value error, listed more than once: a, b"]),
        ("name: gate\nimages: []\n", ["images: List should have at least 1 item"]),
        ("name: gate\n", ["images: Field required"]),
        ("images: [a]\n", ["name: Field required"]),
        ("name: Gate One\nimages: [a]\n", ["name: String should match pattern"]),
        ("name: gate\nimages: [a]\nboot_loop_after: 0\n", ["boot_loop_after: Input should be greater than"]),
        (
            "name: gate\nimages: [a]\ntimeouts: {ready: 0}\n",
            ["timeouts.ready: Input should be greater than or equal to 10"],
        ),
        (
            "name: gate\nimages: [a]\ntimeouts: {stability: -1}\n",
            ["timeouts.stability: Input should be greater"],
        ),
        ("name: gate\nimages: [a]\ntimeouts: {boot: 5}\n", ["timeouts.boot: Extra inputs are not permitted"]),
        ("name: gate\nimages: [a]\nresources: {memory_mib: 64}\n", ["resources.memory_mib: Input should be"]),
        ("name: gate\nimages: [a]\ninclude: [{img: a}]\n", ["include.0.img: Extra inputs are not permitted"]),
        (
            "name: gate\nimages: [a]\nreboots: 99\ncolour: red\n",
            ["reboots: Input should be less than or equal to 20", "colour: Extra inputs are not permitted"],
        ),
    ],
    ids=[
        "bad-yaml",
        "a-list",
        "a-string",
        "empty",
        "unknown-field",
        "too-many-reboots",
        "no-reboot",
        "reboots-not-a-number",
        "duplicate-images",
        "no-images",
        "images-missing",
        "name-missing",
        "bad-name",
        "boot-loop-zero",
        "ready-zero",
        "stability-negative",
        "unknown-timeout",
        "memory-too-small",
        "unknown-selector-field",
        "every-problem-at-once",
    ],
)
def test_parse_errors_name_the_field(text, fragments):
    with pytest.raises(ConfigurationError) as caught:
        parse_matrix(text, source="matrices/gate.yaml")
    message = str(caught.value)
    assert message.startswith("matrices/gate.yaml: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("timeouts", "fragment"),
    [
        ("{ready: .inf}", "timeouts.ready: Input should be a finite number"),
        ("{install: .nan}", "timeouts.install: Input should be a finite number"),
        ("{stability: 0}", "timeouts.stability: Input should be greater than or equal to 5"),
        ("{soak: 10}", "timeouts.soak: Input should be greater than or equal to 30"),
        ("{ready: 100000}", "timeouts.ready: Input should be less than or equal to 3600"),
        ("{probe: 1}", "timeouts.probe: Input should be greater than or equal to 10"),
    ],
)
def test_deadlines_are_finite_and_sane(timeouts, fragment):
    with pytest.raises(ConfigurationError) as caught:
        parse_matrix(f"name: gate\nimages: [a]\ntimeouts: {timeouts}\n")
    assert fragment in str(caught.value)


def test_parse_fills_in_the_defaults():
    spec = parse_matrix("name: gate\nimages: [debian12-kernel-n]\n")
    assert (spec.reboots, spec.boot_loop_after, spec.fail_fast) == (2, 3, False)
    assert spec.coinstalled == [[]]
    assert (spec.timeouts.ready, spec.timeouts.stability, spec.timeouts.install) == (300.0, 15.0, 900.0)
    assert (spec.timeouts.soak, spec.timeouts.probe, spec.retries) == (120.0, 120.0, 1)
    assert (spec.resources.memory_mib, spec.resources.vcpus) == (1024, 1)
    assert spec.include == []
    assert spec.exclude == []


# -- plan_run: what cannot run ---------------------------------------------------------------------


def test_unknown_image_is_named_with_its_index_and_the_known_ones():
    message = problems_of("images: [debian12-kernel-n, debian12-kernel-m]\n")
    assert (
        "images[1]: unknown image 'debian12-kernel-m' "
        "(known: debian12-kernel-n, debian12-kernel-n1, win11-23h2)" in message
    )
    assert "images[0]" not in message


def test_unknown_image_when_nothing_is_built_says_how_to_build():
    message = problems_of("images: [debian12-kernel-n]\n", images={})
    assert (
        "images[0]: unknown image 'debian12-kernel-n' (known: none built yet: run 'testbed images build')"
        in message
    )


def test_an_image_whose_os_family_the_candidate_lacks_cannot_run():
    message = problems_of("images: [debian12-kernel-n, win11-23h2]\n")
    assert (
        "images[1]: image 'win11-23h2' runs windows, but the candidate sensor 7.1.0 "
        "ships sensor packages only for: linux" in message
    )


def test_unknown_product_is_named_with_both_indexes_and_the_known_ones():
    message = problems_of("images: [debian12-kernel-n]\ncoinstalled: [[], [dlp, edr]]\n")
    assert "coinstalled[1][1]: unknown product 'edr' (known: av, dlp)" in message
    assert "coinstalled[1][0]" not in message


def test_unknown_product_when_none_is_registered():
    message = problems_of("images: [debian12-kernel-n]\ncoinstalled: [[dlp]]\n", products=frozenset())
    assert "coinstalled[0][0]: unknown product 'dlp' (known: none registered)" in message


def test_every_problem_is_reported_at_once():
    message = problems_of(
        "images: [nope, win11-23h2]\ncoinstalled: [[edr]]\ninclude: [{coinstalled: [dlp]}, {image: gone}]\n"
    )
    assert message.startswith("the matrix cannot run:\n")
    for fragment in [
        "images[0]: unknown image 'nope'",
        "images[1]: image 'win11-23h2' runs windows",
        "coinstalled[0][0]: unknown product 'edr'",
        "include[0].image: an include rule must name an image",
        "include[1].image: unknown image 'gone'",
    ]:
        assert fragment in message


# -- plan_run: which cells ----------------------------------------------------------------------------


def cells(body: str) -> list[str]:
    return [cell.cell_id for cell in plan_of(body).cells]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("images: [debian12-kernel-n]\n", ["debian12-kernel-n"]),
        (
            "images: [debian12-kernel-n, debian12-kernel-n1]\ncoinstalled: [[], [dlp], [dlp, av]]\n",
            [
                "debian12-kernel-n",
                "debian12-kernel-n+dlp",
                "debian12-kernel-n+dlp+av",
                "debian12-kernel-n1",
                "debian12-kernel-n1+dlp",
                "debian12-kernel-n1+dlp+av",
            ],
        ),
        (
            "images: [debian12-kernel-n]\ninclude: [{image: debian12-kernel-n1, coinstalled: [av]}]\n",
            ["debian12-kernel-n", "debian12-kernel-n1+av"],
        ),
        (
            "images: [debian12-kernel-n]\ninclude: [{image: debian12-kernel-n1}]\n",
            ["debian12-kernel-n", "debian12-kernel-n1"],
        ),
        ("images: [debian12-kernel-n]\ninclude: [{image: debian12-kernel-n}]\n", ["debian12-kernel-n"]),
        (
            "images: [debian12-kernel-n, debian12-kernel-n1]\nexclude: [{image: debian12-kernel-n1}]\n",
            ["debian12-kernel-n"],
        ),
        (
            "images: [debian12-kernel-n, debian12-kernel-n1]\ncoinstalled: [[], [dlp]]\n"
            "exclude: [{coinstalled: [dlp]}]\n",
            ["debian12-kernel-n", "debian12-kernel-n1"],
        ),
        (
            "images: [debian12-kernel-n, debian12-kernel-n1]\ncoinstalled: [[], [dlp]]\n"
            "exclude: [{image: debian12-kernel-n, coinstalled: []}]\n",
            ["debian12-kernel-n+dlp", "debian12-kernel-n1", "debian12-kernel-n1+dlp"],
        ),
        (
            "images: [debian12-kernel-n]\ncoinstalled: [[dlp, av], [av, dlp]]\n"
            "exclude: [{coinstalled: [av, dlp]}]\n",
            ["debian12-kernel-n+dlp+av"],
        ),
        (
            "images: [debian12-kernel-n]\ninclude: [{image: debian12-kernel-n1, coinstalled: [dlp]}]\n"
            "exclude: [{image: debian12-kernel-n1}]\n",
            ["debian12-kernel-n"],
        ),
    ],
    ids=[
        "one-image",
        "cross-product-in-order",
        "include-adds-a-cell",
        "include-without-products-means-none",
        "include-of-an-existing-cell-adds-nothing",
        "exclude-by-image",
        "exclude-by-products-on-every-image",
        "exclude-needs-both-coordinates-to-match",
        "product-order-matters",
        "exclude-beats-include",
    ],
)
def test_include_and_exclude(body, expected):
    assert cells(body) == expected


@pytest.mark.parametrize(
    "exclude",
    ["[{}]", "[{image: debian12-kernel-n}]", "[{coinstalled: []}]"],
)
def test_exclude_removing_every_cell_cannot_run(exclude):
    message = problems_of(f"images: [debian12-kernel-n]\nexclude: {exclude}\n")
    assert message == "the matrix cannot run: exclude rules removed every cell"


@pytest.mark.parametrize(
    ("image", "products", "cell_id"),
    [
        ("debian12-kernel-n", (), "debian12-kernel-n"),
        ("debian12-kernel-n", ("dlp",), "debian12-kernel-n+dlp"),
        ("debian12-kernel-n1", ("dlp", "av"), "debian12-kernel-n1+dlp+av"),
    ],
)
def test_cell_id_joins_the_coordinates(image, products, cell_id):
    assert cell_id_for(image, products) == cell_id


def test_cells_carry_the_spec_and_install_products_before_the_candidate():
    plan = plan_of(
        "images: [debian12-kernel-n1]\ncoinstalled: [[av, dlp]]\nreboots: 4\nboot_loop_after: 2\n"
        "timeouts: {ready: 120, stability: 5, install: 60, soak: 30}\n"
        "resources: {memory_mib: 2048, vcpus: 2}\n"
        "fail_fast: true\n"
    )
    assert (plan.matrix_name, plan.candidate_name, plan.candidate_version) == ("gate", "sensor", "7.1.0")
    assert plan.artifact_digests == {"sensor-linux": "d" * 64, "channel-291": "e" * 64}
    assert plan.fail_fast is True
    (cell,) = plan.cells
    assert cell.image == IMAGES["debian12-kernel-n1"]
    assert cell.coinstalled == ("av", "dlp")
    assert cell.steps == (InstallStep.product("av"), InstallStep.product("dlp"), InstallStep.candidate())
    assert (cell.reboots, cell.boots, cell.boot_loop_after) == (4, 7, 2)  # one more boot per product
    assert cell.timeouts == Timeouts(ready_s=120, stability_s=5, install_s=60, soak_s=30, probe_s=120)
    assert cell.resources == Resources(memory_mib=2048, vcpus=2)
    assert plan.cell("debian12-kernel-n1+av+dlp") is cell
    with pytest.raises(KeyError):
        plan.cell("debian12-kernel-n")


# -- bugs ------------------------------------------------------------------------------------------


def test_an_included_image_whose_os_family_the_candidate_lacks_cannot_run():
    message = problems_of("images: [debian12-kernel-n]\ninclude: [{image: win11-23h2}]\n")
    assert "include[0].image" in message
    assert "windows" in message


def test_an_included_unknown_product_cannot_run():
    message = problems_of(
        "images: [debian12-kernel-n]\ninclude: [{image: debian12-kernel-n, coinstalled: [edr]}]\n"
    )
    assert "include[0].coinstalled[0]: unknown product 'edr'" in message


def test_duplicate_coinstalled_sets_are_refused():
    with pytest.raises(ConfigurationError, match="coinstalled"):
        plan_of("images: [debian12-kernel-n]\ncoinstalled: [[dlp], [dlp]]\n")


def test_an_empty_coinstalled_list_is_named_not_blamed_on_exclude():
    with pytest.raises(ConfigurationError, match="coinstalled"):
        plan_of("images: [debian12-kernel-n]\ncoinstalled: []\n")


# -- the printed plan -------------------------------------------------------------------------------

SNAPSHOT_MATRIX = """\
name: linux-kernels
images:
  - debian12-kernel-n
  - debian12-kernel-n1
coinstalled:
  - []
  - [dlp]
reboots: 2
boot_loop_after: 3
timeouts:
  ready: 300
  stability: 10
  install: 600
resources:
  memory_mib: 1024
  vcpus: 1
fail_fast: false
"""


def test_plan_as_yaml_matches_the_snapshot(snapshots_dir):
    plan = plan_run(parse_matrix(SNAPSHOT_MATRIX), IMAGES, CANDIDATE, PRODUCTS)
    expected = (snapshots_dir / "plan-two-images.yaml").read_text()
    assert plan_as_yaml(plan) == expected


def test_plan_as_yaml_is_stable():
    first = plan_run(parse_matrix(SNAPSHOT_MATRIX), IMAGES, CANDIDATE, PRODUCTS)
    second = plan_run(parse_matrix(SNAPSHOT_MATRIX), dict(reversed(IMAGES.items())), CANDIDATE, PRODUCTS)
    assert plan_as_yaml(first) == plan_as_yaml(second)


# -- the dimensions of past incidents --------------------------------------------------------------

TWO_SENSORS = replace(CANDIDATE, sensor_versions={"linux": ("7.0.3", "7.1.0")})
LAYOUT = ContentLayout(header_size=64, count_fields=(CountField("field_count", 16, 4, "little"),))


def test_sensor_versions_default_to_every_one_the_candidate_ships():
    plan = plan_run(parse_matrix(matrix("images: [debian12-kernel-n]\n")), IMAGES, TWO_SENSORS, PRODUCTS)
    assert [(c.cell_id, c.sensor_version) for c in plan.cells] == [
        ("debian12-kernel-n@7.0.3", "7.0.3"),
        ("debian12-kernel-n@7.1.0", "7.1.0"),
    ]
    single = plan_of("images: [debian12-kernel-n]\n")
    assert [(c.cell_id, c.sensor_version) for c in single.cells] == [("debian12-kernel-n", None)]


def test_a_sensor_version_the_candidate_lacks_cannot_run():
    spec = parse_matrix(matrix("images: [debian12-kernel-n]\nsensor_versions: [6.9.9]\n"))
    with pytest.raises(ConfigurationError) as caught:
        plan_run(spec, IMAGES, TWO_SENSORS, PRODUCTS)
    assert "sensor_versions[0]: the candidate ships no linux sensor '6.9.9' (it ships: 7.0.3, 7.1.0)" in str(
        caught.value
    )


def test_content_variants_cross_every_other_dimension_and_name_their_cells():
    facts = replace(TWO_SENSORS, content_layout=LAYOUT)
    spec = parse_matrix(
        matrix(
            "images: [debian12-kernel-n]\ncoinstalled: [[], [dlp]]\n"
            "content_variants: [as-shipped, zero-filled, count-plus-one]\n"
        )
    )
    plan = plan_run(spec, IMAGES, facts, PRODUCTS)
    assert len(plan.cells) == 2 * 2 * 3
    ids = {cell.cell_id for cell in plan.cells}
    assert "debian12-kernel-n+dlp@7.0.3~zero-filled" in ids
    assert "debian12-kernel-n@7.1.0~count-plus-one.field-count" in ids
    assert "debian12-kernel-n@7.1.0" in ids  # as shipped: no suffix
    cell = plan.cell("debian12-kernel-n+dlp@7.0.3~zero-filled")
    assert cell.coordinates == {
        "image": "debian12-kernel-n",
        "coinstalled": "dlp",
        "sensor_version": "7.0.3",
        "content_variant": "zero-filled",
    }


def test_count_variants_need_a_declared_layout():
    message = problems_of("images: [debian12-kernel-n]\ncontent_variants: [count-minus-one]\n")
    assert "content_variants:" in message and "layout" in message


def test_unknown_content_variant_is_named():
    message = problems_of("images: [debian12-kernel-n]\ncontent_variants: [zero-filled, shredded]\n")
    assert "content_variants:" in message and "shredded" in message


def test_activity_and_crash_policy_reach_every_cell():
    plan = plan_of(
        "images: [debian12-kernel-n]\nactivity: {run: 'ls /'}\non_crash: observe\ncontrols: true\n"
    )
    (cell,) = plan.cells
    assert cell.activity and cell.crash_policy is CrashPolicy.OBSERVE
    assert plan.controls
    assert cell.deadline_s > plan_of("images: [debian12-kernel-n]\n").cells[0].deadline_s


@pytest.mark.parametrize(
    ("activity", "fragment"),
    [
        ("{}", "give the workload either as script (a file) or as run (inline)"),
        ("{script: a.sh, run: ls}", "give the workload either as script"),
        ("{run: ls, timeout: 5}", "activity.timeout: Extra inputs are not permitted"),
    ],
)
def test_activity_needs_exactly_one_workload(activity, fragment):
    with pytest.raises(ConfigurationError) as caught:
        parse_matrix(matrix(f"images: [a]\nactivity: {activity}\n"))
    assert fragment in str(caught.value)


def test_an_activity_workload_on_an_image_whose_family_cannot_run_it_is_refused_at_planning():
    both = replace(CANDIDATE, os_families=frozenset({"linux", "windows"}))
    spec = parse_matrix(
        matrix(
            "images: [debian12-kernel-n, win11-23h2]\nactivity: {run: 'ls /'}\n"
            "include: [{image: win11-23h2}]\n"
        )
    )

    with pytest.raises(ConfigurationError) as caught:
        plan_run(spec, IMAGES, both, PRODUCTS, frozenset({"linux"}))
    without_activity = plan_run(
        parse_matrix(matrix("images: [debian12-kernel-n, win11-23h2]\n")),
        IMAGES,
        both,
        PRODUCTS,
        frozenset({"linux"}),
    )

    assert str(caught.value) == (  # once per image, however often the matrix names it
        "the matrix cannot run:\n  activity: image 'win11-23h2' runs windows, whose guests cannot run the "
        "activity workload (a POSIX sh script; families that can: linux)"
    )
    assert len(without_activity.cells) == 2


def test_exclude_by_sensor_version_and_variant():
    facts = replace(TWO_SENSORS, content_layout=LAYOUT)
    spec = parse_matrix(
        matrix(
            "images: [debian12-kernel-n]\ncontent_variants: [as-shipped, empty]\n"
            "exclude: [{sensor_version: 7.0.3, content_variant: empty}]\n"
        )
    )
    ids = [cell.cell_id for cell in plan_run(spec, IMAGES, facts, PRODUCTS).cells]
    assert ids == ["debian12-kernel-n@7.0.3", "debian12-kernel-n@7.1.0", "debian12-kernel-n@7.1.0~empty"]


def test_a_control_twin_has_the_products_but_not_the_candidate():
    (cell,) = plan_of("images: [debian12-kernel-n]\ncoinstalled: [[dlp]]\nactivity: {run: ls}\n").cells
    twin = control_twin(cell)
    assert twin.cell_id == "debian12-kernel-n+dlp~control"
    assert twin.steps == (InstallStep.product("dlp"),)
    assert twin.control_of == cell.cell_id and not twin.activity
