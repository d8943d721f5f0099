"""The matrix file: which guests to boot a candidate on, and how hard to test each one (pydantic).

Everything a user can get wrong is reported with its field path; nothing is started.
"""

import re
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.core.errors import ConfigurationError, describe_validation_error

_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class TimeoutsSpec(BaseModel):
    """Deadlines, in seconds: finite and within sane bounds (a deadline nobody reaches is none)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ready: float = Field(
        300.0, ge=10, le=3600, description="per boot: from start or reboot to a readiness answer"
    )
    stability: float = Field(
        15.0, ge=5, le=3600, description="every ready boot must stay up this long before it is probed"
    )
    install: float = Field(900.0, ge=10, le=7200, description="per install step")
    soak: float = Field(
        120.0, ge=30, le=86400, description="the last boot stays up this long more, then is probed again"
    )
    probe: float = Field(120.0, ge=10, le=1800, description="a health probe must report back within this")


class ResourcesSpec(BaseModel):
    """What one cell's VM gets."""

    model_config = ConfigDict(extra="forbid")

    memory_mib: int = Field(1024, ge=128, le=65536)
    vcpus: int = Field(1, ge=1, le=64)


class CellSelector(BaseModel):
    """Picks cells by coordinates, for ``include`` and ``exclude``; unset fields match anything."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    coinstalled: list[str] | None = None
    sensor_version: str | None = None
    content_variant: str | None = None


class ActivitySpec(BaseModel):
    """A workload run in the guest after install and after every boot: what users do (open
    files, start processes, connect), because some content only faults when its rule matches."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    script: str | None = Field(
        None, min_length=1, description="a POSIX sh script, relative to the matrix file"
    )
    run: str | None = Field(None, min_length=1, description="the POSIX sh workload itself, inline")

    @model_validator(mode="after")
    def _one_workload(self) -> "ActivitySpec":
        if (self.script is None) == (self.run is None):
            raise ValueError("give the workload either as script (a file) or as run (inline), not both")
        return self


def _no_coinstalled_products() -> list[list[str]]:
    return [[]]


class MatrixSpec(BaseModel):
    """A matrix file: which guests to boot the candidate on, and how hard to test each one."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME_PATTERN)
    images: list[str] = Field(min_length=1)
    coinstalled: list[list[str]] = Field(
        default_factory=_no_coinstalled_products,
        min_length=1,
        description="each entry is one set of products installed before the candidate; [] is none",
    )
    reboots: int = Field(
        2,
        ge=1,
        le=20,
        description="reboots after install: at least one, or boot-time loading is never tested",
    )
    boot_loop_after: int = Field(3, ge=1, le=50, description="resets without readiness that make a loop")
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    fail_fast: bool = False
    require_signed_candidate: bool = Field(
        False, description="refuse a candidate whose manifest no trusted release key signed"
    )
    retries: int = Field(
        1, ge=0, le=3, description="new attempts, on a fresh clone, for a cell ending infra_error"
    )
    sensor_versions: list[str] | None = Field(
        None,
        min_length=1,
        description="the sensor releases (of the candidate's packages) the content is tried with; "
        "default: every one the candidate ships",
    )
    content_variants: list[str] = Field(
        default_factory=lambda: ["as-shipped"],
        min_length=1,
        description="content as shipped and/or generated variants of it (zero-filled, truncated-half, ...)",
    )
    variant_seed: int = Field(20240719, ge=0, description="seed of the generated content variants")
    activity: ActivitySpec | None = None
    on_crash: Literal["stop", "observe"] = Field(
        "stop",
        description="stop: keep the crashed guest as evidence; observe: let it reboot and count "
        "crashes up to boot_loop_after, to see whether it recovers",
    )
    controls: bool = Field(
        False, description="run a failing cell's twin without the candidate: if it fails too, blame the image"
    )
    include: list[CellSelector] = Field(default_factory=list)
    exclude: list[CellSelector] = Field(default_factory=list)

    @field_validator("images")
    @classmethod
    def _images_unique(cls, images: list[str]) -> list[str]:
        duplicates = sorted({name for name in images if images.count(name) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return images

    @field_validator("sensor_versions", "content_variants")
    @classmethod
    def _no_repeats(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"an entry is listed more than once: {values}")
        return values

    @field_validator("coinstalled")
    @classmethod
    def _product_sets_unique(cls, sets: list[list[str]]) -> list[list[str]]:
        seen: list[list[str]] = []
        for products in sets:
            for name in products:
                if not re.match(_NAME_PATTERN, name):
                    raise ValueError(f"product name {name!r} must match {_NAME_PATTERN}")
            if products in seen:
                raise ValueError(f"the product set {products} is listed more than once")
            if len(set(products)) != len(products):
                raise ValueError(f"the product set {products} names a product twice")
            seen.append(products)
        return sets


def parse_matrix(text: str, source: str = "matrix") -> MatrixSpec:
    """Parse and validate matrix YAML; every problem is reported with its field path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return MatrixSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: invalid matrix:\n{describe_validation_error(exc)}") from exc
