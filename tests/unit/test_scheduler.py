"""Placement of pending cells on hosts: a pure function of capacity and demand."""

import pytest

from orchestrator.core.scheduler import Demand, HostCapacity, assign

pytestmark = pytest.mark.unit


def host(name, max_cells=2, running=0, memory=8192, healthy=True, kvm=False):
    return HostCapacity(
        name=name, max_cells=max_cells, running=running, memory_free_mib=memory, healthy=healthy, kvm=kvm
    )


def windows(cell_id, memory=4096):
    return Demand(cell_id, memory, needs_kvm=True)


def demands(*memory):
    return [Demand(f"c{index}", mib) for index, mib in enumerate(memory, start=1)]


@pytest.mark.parametrize(
    ("pending", "hosts", "expected"),
    [
        (demands(1024), [host("a")], {"c1": "a"}),
        (demands(1024, 1024, 1024), [host("a", max_cells=2)], {"c1": "a", "c2": "a"}),
        (demands(1024, 1024), [host("a", max_cells=2, running=2)], {}),
        (demands(1024, 1024), [host("a", max_cells=3, running=2)], {"c1": "a"}),
        (demands(1024), [host("a", running=5)], {}),
        # the host with the most free slots first, then the next
        (
            demands(1024, 1024, 1024),
            [host("a", max_cells=1), host("b", max_cells=2)],
            {"c1": "b", "c2": "a", "c3": "b"},
        ),
        (demands(1024), [host("a", max_cells=4, running=3), host("b", max_cells=2)], {"c1": "b"}),
        # ties go to the host listed first
        (demands(1024), [host("a"), host("b")], {"c1": "a"}),
        (demands(1024), [host("b"), host("a")], {"c1": "b"}),
        (demands(1024, 1024), [host("a"), host("b")], {"c1": "a", "c2": "b"}),
        # memory
        (demands(4096), [host("a", memory=2048)], {}),
        (
            demands(4096),
            [host("a", max_cells=4, memory=2048), host("b", max_cells=1, memory=4096)],
            {"c1": "b"},
        ),
        (demands(2048, 2048, 2048), [host("a", max_cells=8, memory=5000)], {"c1": "a", "c2": "a"}),
        (demands(2048, 2048), [host("a", max_cells=8, memory=4096)], {"c1": "a", "c2": "a"}),
        # a cell that does not fit does not block smaller ones behind it
        (demands(16384, 1024), [host("a", memory=8192)], {"c2": "a"}),
        # unhealthy hosts take nothing
        (demands(1024), [host("a", healthy=False)], {}),
        (demands(1024, 1024), [host("a", max_cells=8, healthy=False), host("b", max_cells=1)], {"c1": "b"}),
        # a cell that needs KVM goes only to a KVM host, however free the others are
        ([windows("w1")], [host("tcg", max_cells=8), host("kvm", max_cells=1, kvm=True)], {"w1": "kvm"}),
        ([windows("w1")], [host("tcg", max_cells=8)], {}),
        (
            [windows("w1"), windows("w2"), *demands(1024)],
            [host("tcg", max_cells=8), host("kvm", max_cells=1, kvm=True)],
            {"w1": "kvm", "c1": "tcg"},
        ),
        (demands(1024), [host("kvm", kvm=True)], {"c1": "kvm"}),  # a KVM host takes anything
        # nothing to place, nowhere to place it
        ([], [host("a")], {}),
        (demands(1024), [], {}),
    ],
    ids=[
        "one-cell",
        "slots-limit",
        "host-full",
        "one-slot-left",
        "over-committed-host",
        "most-free-slots",
        "free-slots-not-max-cells",
        "tie-first-listed",
        "tie-first-listed-reversed",
        "spread-on-ties",
        "too-big",
        "fits-only-on-the-bigger-host",
        "memory-runs-out",
        "memory-exactly-enough",
        "no-head-of-line-blocking",
        "unhealthy",
        "unhealthy-skipped",
        "kvm-only-on-kvm",
        "kvm-nowhere",
        "kvm-slot-taken-the-rest-elsewhere",
        "kvm-host-takes-anything",
        "nothing-pending",
        "no-hosts",
    ],
)
def test_assign(pending, hosts, expected):
    assert dict(assign(pending, hosts)) == expected


@pytest.mark.parametrize(
    ("capacity", "free"),
    [
        (host("a", max_cells=3, running=1), 2),
        (host("a", max_cells=1, running=3), 0),
        (host("a", healthy=False), 0),
    ],
)
def test_free_slots(capacity, free):
    assert capacity.free_slots == free


def test_placement_is_deterministic():
    pending = demands(*[512 * (index % 3 + 1) for index in range(12)])
    hosts = [host("a", max_cells=3, memory=4096), host("b", max_cells=5, memory=3000), host("c", max_cells=2)]
    first = assign(pending, hosts)
    assert all(assign(pending, hosts) == first for _ in range(5))
    assert list(first) == [d.cell_id for d in pending if d.cell_id in first]  # plan order kept
    for name in ("a", "b", "c"):
        placed = [d for d in pending if first.get(d.cell_id) == name]
        capacity = next(h for h in hosts if h.name == name)
        assert len(placed) <= capacity.max_cells
        assert sum(d.memory_mib for d in placed) <= capacity.memory_free_mib
