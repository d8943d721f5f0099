"""A validated run plan: plain, immutable data that can describe itself as a dict."""

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class StepKind(StrEnum):
    """What an install step installs."""

    PRODUCT = "product"  # a co-installed product (DLP, AV) installed before the candidate
    CANDIDATE = "candidate"  # the artifact under test


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

    def __str__(self) -> str:
        return f"install {self.name}" if self.kind is StepKind.PRODUCT else "install candidate"


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

    @property
    def boots(self) -> int:
        """How many boots must become ready: the first one, one after each co-installed product,
        one per reboot after the candidate."""
        products = sum(step.kind is StepKind.PRODUCT for step in self.steps)
        return 1 + products + self.reboots

    @property
    def deadline_s(self) -> float:
        return self.timeouts.cell_s(self.boots, len(self.steps))


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
