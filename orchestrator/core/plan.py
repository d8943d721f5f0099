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

    ready_s: float
    stability_s: float
    install_s: float


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

    @property
    def boots(self) -> int:
        """How many boots must become ready: the first one plus one per reboot."""
        return self.reboots + 1


@dataclass(frozen=True)
class RunPlan:
    """Every cell of a run plus what binds it to the candidate."""

    matrix_name: str
    candidate_name: str
    candidate_version: str
    artifact_digests: dict[str, str]
    fail_fast: bool
    cells: tuple[CellPlan, ...] = field(default_factory=tuple)

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
