"""examples/incidents.yaml and its catalog fit together: the matrix plans the cells the catalog names.

The real run is `make incidents` (minutes of guests); this keeps the two files from drifting apart:
every incident selects at least one cell of the plan, and no cell of the plan is there for nothing.
"""

import pytest

from orchestrator.core.expectations import ObservedCell, check_catalog, parse_catalog
from orchestrator.core.matrix import CandidateFacts, plan_run
from orchestrator.core.matrix_spec import parse_matrix
from orchestrator.core.outcomes import CellOutcome
from orchestrator.core.plan import CellPlan, ImageFacts
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

EXAMPLES = REPO_ROOT / "examples"
IMAGES = {
    "debian12-kernel-n-fast": ImageFacts(
        "debian12-kernel-n-fast", "linux", "debian-12-fastboot", "6.1.0-56-amd64", "a" * 64
    ),
    "debian12-kernel-n1-fast": ImageFacts(
        "debian12-kernel-n1-fast", "linux", "debian-12-fastboot", "6.1.0-55-amd64", "b" * 64
    ),
}
RELEASE = CandidateFacts(
    name="testbed-sensor",
    version="1.1.0",
    os_families=frozenset({"linux"}),
    artifact_digests={
        "sensor-linux-1.1.0": "c" * 64,
        "sensor-linux-1.0.0": "d" * 64,
        "channel-294": "e" * 64,
    },
    sensor_versions={"linux": ("1.1.0", "1.0.0")},
)


def planned_cells() -> list[CellPlan]:
    spec = parse_matrix((EXAMPLES / "incidents.yaml").read_text(), "incidents.yaml")
    return list(plan_run(spec, IMAGES, RELEASE, frozenset({"dlp-agent", "netguard"})).cells)


def as_observed(cell: CellPlan) -> ObservedCell:
    return ObservedCell(
        cell.cell_id,
        cell.image.name,
        cell.coinstalled,
        cell.sensor_version,
        cell.content_variant,
        CellOutcome.PASSED,
        "",
    )


def test_the_matrix_plans_one_cell_per_incident_and_nothing_else():
    cells = planned_cells()

    assert sorted((c.image.name, c.coinstalled, c.sensor_version, c.content_variant) for c in cells) == [
        ("debian12-kernel-n-fast", (), "1.0.0", "as-shipped"),
        ("debian12-kernel-n-fast", (), "1.1.0", "as-shipped"),
        ("debian12-kernel-n-fast", (), "1.1.0", "zero-filled"),
        ("debian12-kernel-n-fast", ("dlp-agent",), "1.1.0", "as-shipped"),
        ("debian12-kernel-n-fast", ("netguard",), "1.1.0", "as-shipped"),
        ("debian12-kernel-n1-fast", (), "1.1.0", "as-shipped"),
    ]
    assert all(c.activity for c in cells)  # the July 2024 rule only faults on its event


def test_every_incident_of_the_catalog_selects_cells_of_the_plan_and_every_cell_serves_one():
    catalog = parse_catalog((EXAMPLES / "incidents-catalog.yaml").read_text(), "incidents-catalog.yaml")
    observed = [as_observed(cell) for cell in planned_cells()]

    checks = check_catalog(catalog, observed)

    selected = {check.failure.id: [c.cell_id for c in check.missed_by] for check in checks}
    assert all(selected.values()), selected  # every incident has cells that can catch it
    serving = {cell_id for ids in selected.values() for cell_id in ids}
    assert serving == {c.cell_id for c in observed}
