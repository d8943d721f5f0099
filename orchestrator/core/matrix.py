"""The matrix spec (YAML, validated by pydantic) and its expansion into a validated run plan.

Expansion is pure: it takes the spec plus what is known about images, the candidate and
co-installed products, and either returns a whole :class:`RunPlan` or raises one
``ConfigurationError`` that lists every problem with the field it concerns. No VM is touched.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

import yaml

from orchestrator.core.content_variants import AS_SHIPPED, ContentLayout, expand_variants, variant_label
from orchestrator.core.errors import ConfigurationError
from orchestrator.core.matrix_spec import CellSelector, MatrixSpec, parse_matrix
from orchestrator.core.plan import (
    CellPlan,
    CrashPolicy,
    ImageFacts,
    InstallStep,
    Resources,
    RunPlan,
    StepKind,
    Timeouts,
)

__all__ = [
    "CandidateFacts",
    "Coordinates",
    "MatrixSpec",
    "cell_id_for",
    "control_twin",
    "parse_matrix",
    "plan_as_yaml",
    "plan_run",
]


@dataclass(frozen=True)
class CandidateFacts:
    """What planning needs to know of the candidate (the manifest itself is loaded elsewhere)."""

    name: str
    version: str
    os_families: frozenset[str]
    artifact_digests: Mapping[str, str]
    sensor_versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per OS family
    content_layout: ContentLayout | None = None  # what the content files declare of their layout


@dataclass(frozen=True)
class Coordinates:
    """Where one cell sits in the matrix."""

    image: str
    products: tuple[str, ...]
    sensor_version: str | None
    variant: str


def cell_id_for(
    image: str, coinstalled: Sequence[str], sensor_version: str | None = None, variant: str = AS_SHIPPED
) -> str:
    """A readable, unique name for a cell from its coordinates: image+product...@sensor~variant."""
    cell_id = "+".join([image, *coinstalled])
    if sensor_version is not None:
        cell_id += f"@{sensor_version}"
    if variant != AS_SHIPPED:
        cell_id += f"~{variant_label(variant)}"
    return cell_id


def _selects(selector: CellSelector, at: Coordinates) -> bool:
    checks = (
        (selector.image, at.image),
        (selector.coinstalled, list(at.products)),
        (selector.sensor_version, at.sensor_version),
        (selector.content_variant, at.variant),
    )
    return all(wanted is None or wanted == actual for wanted, actual in checks)


def _sensor_versions(
    spec: MatrixSpec, images: Mapping[str, ImageFacts], candidate: CandidateFacts
) -> list[str | None]:
    """The sensor dimension: one value (None: the candidate's own release) unless several are asked
    for or shipped."""
    if spec.sensor_versions is not None:
        return list(spec.sensor_versions)
    families = {images[name].os_family for name in spec.images if name in images}
    shipped = sorted({v for family in families for v in candidate.sensor_versions.get(family, ())})
    return list(shipped) if len(shipped) > 1 else [None]


def _coordinates(spec: MatrixSpec, sensors: list[str | None], variants: Sequence[str]) -> list[Coordinates]:
    crossed = [
        Coordinates(image, tuple(products), sensor, variant)
        for image, products, sensor, variant in product(spec.images, spec.coinstalled, sensors, variants)
    ]
    for selector in spec.include:
        if selector.image is None:
            continue  # reported by validation
        extra = Coordinates(
            selector.image,
            tuple(selector.coinstalled or ()),
            selector.sensor_version if selector.sensor_version is not None else sensors[0],
            selector.content_variant or AS_SHIPPED,
        )
        if extra not in crossed:
            crossed.append(extra)
    return [at for at in crossed if not any(_selects(rule, at) for rule in spec.exclude)]


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


def _sensor_problems(
    spec: MatrixSpec, images: Mapping[str, ImageFacts], candidate: CandidateFacts
) -> list[str]:
    problems = []
    for index, version in enumerate(spec.sensor_versions or ()):
        for image in spec.images:
            family = images[image].os_family if image in images else None
            shipped = candidate.sensor_versions.get(family or "", ())
            if family is not None and version not in shipped:
                problems.append(
                    f"sensor_versions[{index}]: the candidate ships no {family} sensor {version!r} "
                    f"(it ships: {', '.join(shipped) or 'none'})"
                )
                break
    return problems


def _activity_problems(
    spec: MatrixSpec, images: Mapping[str, ImageFacts], activity_families: frozenset[str]
) -> list[str]:
    """An activity workload every image of the matrix must be able to run (found before a Windows
    cell boots, installs and only then refuses the workload)."""
    if spec.activity is None:
        return []
    named = [*spec.images, *(selector.image for selector in spec.include if selector.image)]
    unable = sorted(
        {name for name in named if name in images and images[name].os_family not in activity_families}
    )
    return [
        f"activity: image {name!r} runs {images[name].os_family}, whose guests cannot run the activity "
        f"workload (a POSIX sh script; families that can: {', '.join(sorted(activity_families)) or 'none'})"
        for name in unable
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
    problems += _sensor_problems(spec, images, candidate)
    try:
        expand_variants(spec.content_variants, candidate.content_layout)
    except ConfigurationError as exc:
        problems.append(f"content_variants: {exc}")
    return problems


def plan_run(
    spec: MatrixSpec,
    images: Mapping[str, ImageFacts],
    candidate: CandidateFacts,
    known_products: frozenset[str] = frozenset(),
    activity_families: frozenset[str] = frozenset({"linux"}),
) -> RunPlan:
    """Expand the matrix into cells and validate the whole plan before anything starts.
    ``activity_families``: the guest families that can run the activity workload."""
    problems = _problems(spec, images, candidate, known_products)
    problems += _activity_problems(spec, images, activity_families)
    if problems:
        raise ConfigurationError("the matrix cannot run:\n" + "\n".join(f"  {p}" for p in problems))
    variants = expand_variants(spec.content_variants, candidate.content_layout)
    coordinates = _coordinates(spec, _sensor_versions(spec, images, candidate), variants)
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
            cell_id=cell_id_for(at.image, at.products, at.sensor_version, at.variant),
            image=images[at.image],
            coinstalled=at.products,
            steps=(*(InstallStep.product(name) for name in at.products), InstallStep.candidate()),
            reboots=spec.reboots,
            boot_loop_after=spec.boot_loop_after,
            timeouts=timeouts,
            resources=resources,
            sensor_version=at.sensor_version,
            content_variant=at.variant,
            activity=spec.activity is not None,
            crash_policy=CrashPolicy(spec.on_crash),
        )
        for at in coordinates
    )
    ids = [cell.cell_id for cell in cells]
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"the matrix cannot run: two cells would share an id: {ids}")
    return RunPlan(
        matrix_name=spec.name,
        candidate_name=candidate.name,
        candidate_version=candidate.version,
        artifact_digests=dict(candidate.artifact_digests),
        fail_fast=spec.fail_fast,
        cells=cells,
        controls=spec.controls,
        variant_seed=spec.variant_seed,
    )


def control_twin(cell: CellPlan) -> CellPlan:
    """The same guest, products and content, without the candidate: if it fails too, the failure
    belongs to the image or the infrastructure."""
    return replace(
        cell,
        cell_id=f"{cell.cell_id}~control",
        steps=tuple(step for step in cell.steps if step.kind is StepKind.PRODUCT),
        control_of=cell.cell_id,
        activity=False,
        attempt=1,
    )


def plan_as_yaml(plan: RunPlan) -> str:
    """The plan as stable YAML, for ``--dry-run`` and snapshot tests."""
    data: dict[str, Any] = plan.as_dict()
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
