"""A validated run plan: plain, immutable data that can describe itself as a dict."""

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class StepKind(StrEnum):
    """What a step inside the guest does."""

    PRODUCT = "product"  # installs a co-installed product (DLP, AV) before the candidate
    CANDIDATE = "candidate"  # installs the artifact under test
    ACTIVITY = "activity"  # runs the activity workload (what users do) once the candidate is in


class CrashPolicy(StrEnum):
    """What a cell does when its guest crashes after the candidate is in."""

    STOP = "stop"  # keep the crashed guest as it is: evidence, and the verdict is known
    OBSERVE = "observe"  # reset it and count crashes: a boot loop, or a recovery?


@dataclass(frozen=True)
class InstallStep:
    """One installation inside the guest."""

    kind: StepKind
    name: str

    @classmethod
    def product(cls, name: str) -> "InstallStep":
        return cls(StepKind.PRODUCT, name)

    @classmethod
    def candidate(cls) -> "InstallStep":
        return cls(StepKind.CANDIDATE, "candidate")

    @classmethod
    def activity(cls) -> "InstallStep":
        return cls(StepKind.ACTIVITY, "activity")

    def __str__(self) -> str:
        match self.kind:
            case StepKind.PRODUCT:
                return f"install {self.name}"
            case StepKind.CANDIDATE:
                return "install candidate"
        return "activity workload"


@dataclass(frozen=True)
class Timeouts:
    """Deadlines of one cell, in seconds."""

    ready_s: float  # per boot: from start or reboot to a readiness answer
    stability_s: float  # every ready boot must stay up this long before it is probed
    install_s: float  # per install step
    soak_s: float = 120.0  # the last boot stays up this long more, then is probed again
    probe_s: float = 120.0  # a health probe (agent, sshd, the candidate's check) must finish in this
    nmi_grace_s: float = 30.0  # after an NMI is injected into a silent guest, wait this long for its dump

    def cell_s(self, boots: int, steps: int) -> float:
        """How long a whole cell may take before the testbed gives up on it (its own trouble).

        Every phase has its own deadline; this one only catches what none of them can: a port
        that never reports back. Twice the sum of the phase deadlines, plus a margin for cleanup.
        """
        per_boot = self.ready_s + self.stability_s + self.probe_s
        total = boots * per_boot + steps * (self.install_s + self.stability_s + self.probe_s)
        total += self.soak_s + self.probe_s + self.nmi_grace_s
        return 2 * total + 300.0


@dataclass(frozen=True)
class Resources:
    """What one cell's VM gets."""

    memory_mib: int
    vcpus: int


@dataclass(frozen=True)
class ImageFacts:
    """What the plan needs to know about a golden image (the catalog holds the rest)."""

    name: str
    os_family: str
    os_version: str
    kernel: str
    digest: str
    expected_outcome: str | None = None  # a control image: how every cell on it must end


@dataclass(frozen=True)
class CellPlan:
    """One VM's journey, fully decided before it starts."""

    cell_id: str
    image: ImageFacts
    coinstalled: tuple[str, ...]
    steps: tuple[InstallStep, ...]
    reboots: int
    boot_loop_after: int
    timeouts: Timeouts
    resources: Resources
    attempt: int = 1  # a cell that ended in an infrastructure error is tried again on a fresh clone
    sensor_version: str | None = None  # which of the candidate's sensor releases (None: its own)
    content_variant: str = "as-shipped"  # the candidate's content as shipped, or a generated variant
    activity: bool = False  # run the activity workload after install and after every boot
    crash_policy: CrashPolicy = CrashPolicy.STOP
    control_of: str | None = None  # this cell is the control twin (no candidate) of that cell
    content_digests: tuple[tuple[str, str], ...] = ()  # content artifact -> sha256 of what this cell gets

    @property
    def coordinates(self) -> dict[str, str]:
        """Where the cell sits in the matrix, for grids and reports."""
        return {
            "image": self.image.name,
            "coinstalled": "+".join(self.coinstalled) or "none",
            "sensor_version": self.sensor_version or "",
            "content_variant": self.content_variant,
        }

    @property
    def boots(self) -> int:
        """How many boots must become ready: the first one, one after each co-installed product,
        one per reboot after the candidate."""
        products = sum(step.kind is StepKind.PRODUCT for step in self.steps)
        return 1 + products + self.reboots

    @property
    def deadline_s(self) -> float:
        boots = self.boots + (self.boot_loop_after if self.crash_policy is CrashPolicy.OBSERVE else 0)
        activities = self.reboots + 1 if self.activity else 0
        return self.timeouts.cell_s(boots, len(self.steps) + activities)


@dataclass(frozen=True)
class RunPlan:
    """Every cell of a run plus what binds it to the candidate."""

    matrix_name: str
    candidate_name: str
    candidate_version: str
    artifact_digests: dict[str, str]
    fail_fast: bool
    cells: tuple[CellPlan, ...] = field(default_factory=tuple)
    matrix_sha256: str = ""  # of the matrix file's bytes: the policy a verdict is bound to
    matrix_source: str = ""  # where it was read from (a path, or "api")
    controls: bool = False  # a failing cell gets a control twin without the candidate
    variant_seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, StrEnum):
                return str(value)
            if isinstance(value, dict):
                return {key: convert(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [convert(item) for item in value]
            return value

        data: dict[str, Any] = convert(asdict(self))
        return data

    def cell(self, cell_id: str) -> CellPlan:
        for cell in self.cells:
            if cell.cell_id == cell_id:
                return cell
        raise KeyError(cell_id)
