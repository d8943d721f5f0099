"""The matrix spec (YAML, validated by pydantic) and its expansion into a validated run plan.

Expansion is pure: it takes the spec plus what is known about images, the candidate and
co-installed products, and either returns a whole :class:`RunPlan` or raises one
``ConfigurationError`` that lists every problem with the field it concerns. No VM is touched.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.core.errors import ConfigurationError, describe_validation_error
from orchestrator.core.plan import CellPlan, ImageFacts, InstallStep, Resources, RunPlan, Timeouts

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
    """Picks cells by coordinates, for ``include`` and ``exclude``."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    coinstalled: list[str] | None = None


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
    include: list[CellSelector] = Field(default_factory=list)
    exclude: list[CellSelector] = Field(default_factory=list)

    @field_validator("images")
    @classmethod
    def _images_unique(cls, images: list[str]) -> list[str]:
        duplicates = sorted({name for name in images if images.count(name) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return images

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


@dataclass(frozen=True)
class CandidateFacts:
    """What planning needs to know of the candidate (the manifest itself is loaded elsewhere)."""

    name: str
    version: str
    os_families: frozenset[str]
    artifact_digests: Mapping[str, str]
    sensor_versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per OS family


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


def cell_id_for(image: str, coinstalled: Sequence[str]) -> str:
    """A readable, unique name for a cell from its coordinates."""
    return "+".join([image, *coinstalled])


def _selects(selector: CellSelector, image: str, coinstalled: Sequence[str]) -> bool:
    if selector.image is not None and selector.image != image:
        return False
    return selector.coinstalled is None or list(selector.coinstalled) == list(coinstalled)


def _coordinates(spec: MatrixSpec) -> list[tuple[str, tuple[str, ...]]]:
    crossed = [(image, tuple(products)) for image, products in product(spec.images, spec.coinstalled)]
    for selector in spec.include:
        if selector.image is None:
            continue  # reported by validation
        extra = (selector.image, tuple(selector.coinstalled or ()))
        if extra not in crossed:
            crossed.append(extra)
    return [
        (image, products)
        for image, products in crossed
        if not any(_selects(rule, image, products) for rule in spec.exclude)
    ]


def _image_problems(
    where: str, name: str, images: Mapping[str, ImageFacts], candidate: CandidateFacts
) -> list[str]:
    if name not in images:
        known = ", ".join(sorted(images)) or "none built yet: run 'testbed images build'"
        return [f"{where}: unknown image {name!r} (known: {known})"]
    if images[name].os_family not in candidate.os_families:
        families = ", ".join(sorted(candidate.os_families)) or "none"
        return [
            f"{where}: image {name!r} runs {images[name].os_family}, but the candidate "
            f"{candidate.name} {candidate.version} ships sensor packages only for: {families}"
        ]
    return []


def _product_problems(where: str, products: Sequence[str], known_products: frozenset[str]) -> list[str]:
    known = ", ".join(sorted(known_products)) or "none registered"
    return [
        f"{where}[{index}]: unknown product {name!r} (known: {known})"
        for index, name in enumerate(products)
        if name not in known_products
    ]


def _problems(
    spec: MatrixSpec,
    images: Mapping[str, ImageFacts],
    candidate: CandidateFacts,
    known_products: frozenset[str],
) -> list[str]:
    problems = []
    for index, name in enumerate(spec.images):
        problems += _image_problems(f"images[{index}]", name, images, candidate)
    for index, products in enumerate(spec.coinstalled):
        problems += _product_problems(f"coinstalled[{index}]", products, known_products)
    for index, selector in enumerate(spec.include):
        if selector.image is None:
            problems.append(f"include[{index}].image: an include rule must name an image")
        else:
            problems += _image_problems(f"include[{index}].image", selector.image, images, candidate)
        problems += _product_problems(
            f"include[{index}].coinstalled", selector.coinstalled or [], known_products
        )
    return problems


def plan_run(
    spec: MatrixSpec,
    images: Mapping[str, ImageFacts],
    candidate: CandidateFacts,
    known_products: frozenset[str] = frozenset(),
) -> RunPlan:
    """Expand the matrix into cells and validate the whole plan before anything starts."""
    problems = _problems(spec, images, candidate, known_products)
    if problems:
        raise ConfigurationError("the matrix cannot run:\n" + "\n".join(f"  {p}" for p in problems))
    coordinates = _coordinates(spec)
    if not coordinates:
        raise ConfigurationError("the matrix cannot run: exclude rules removed every cell")
    timeouts = Timeouts(
        ready_s=spec.timeouts.ready,
        stability_s=spec.timeouts.stability,
        install_s=spec.timeouts.install,
        soak_s=spec.timeouts.soak,
        probe_s=spec.timeouts.probe,
    )
    resources = Resources(memory_mib=spec.resources.memory_mib, vcpus=spec.resources.vcpus)
    cells = tuple(
        CellPlan(
            cell_id=cell_id_for(image, products),
            image=images[image],
            coinstalled=products,
            steps=(*(InstallStep.product(name) for name in products), InstallStep.candidate()),
            reboots=spec.reboots,
            boot_loop_after=spec.boot_loop_after,
            timeouts=timeouts,
            resources=resources,
        )
        for image, products in coordinates
    )
    return RunPlan(
        matrix_name=spec.name,
        candidate_name=candidate.name,
        candidate_version=candidate.version,
        artifact_digests=dict(candidate.artifact_digests),
        fail_fast=spec.fail_fast,
        cells=cells,
    )


def plan_as_yaml(plan: RunPlan) -> str:
    """The plan as stable YAML, for ``--dry-run`` and snapshot tests."""
    data: dict[str, Any] = plan.as_dict()
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
