"""Builders shared by the unit tier: hand-written cell plans and the fixture/snapshot folders."""

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.core.plan import CellPlan, ImageFacts, InstallStep, Resources, Timeouts

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"

DEBIAN_N = ImageFacts(
    name="debian12-kernel-n",
    os_family="linux",
    os_version="debian-12",
    kernel="6.1.0-56-amd64",
    digest="1" * 64,
)


def build_plan(
    *,
    cell_id: str = "debian12-kernel-n",
    products: tuple[str, ...] = (),
    reboots: int = 1,
    boot_loop_after: int = 3,
    ready_s: float = 300.0,
    stability_s: float = 15.0,
    memory_mib: int = 1024,
    image: ImageFacts = DEBIAN_N,
) -> CellPlan:
    """A cell plan written by hand: co-installed products first, then the candidate."""
    return CellPlan(
        cell_id=cell_id,
        image=image,
        coinstalled=products,
        steps=(*(InstallStep.product(name) for name in products), InstallStep.candidate()),
        reboots=reboots,
        boot_loop_after=boot_loop_after,
        timeouts=Timeouts(ready_s=ready_s, stability_s=stability_s, install_s=600.0),
        resources=Resources(memory_mib=memory_mib, vcpus=1),
    )


@pytest.fixture
def make_plan() -> Callable[..., CellPlan]:
    return build_plan


@pytest.fixture
def plan() -> CellPlan:
    """One reboot, no co-installed product, the candidate as the only step."""
    return build_plan()


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def snapshots_dir() -> Path:
    return SNAPSHOTS
