"""The candidate: the exact artifacts under test, each pinned by sha256 in candidate.yaml.

Loading checks every file exists and matches its pinned digest before anything starts; the
install playbook checks the digests again inside each guest.
"""

import hashlib
import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.core import content_variants
from orchestrator.core.content_variants import AS_SHIPPED, ContentLayout, generate
from orchestrator.core.matrix import CandidateFacts
from orchestrator.errors import ConfigurationError, describe_validation_error

MANIFEST_NAME = "candidate.yaml"


class ArtifactKind(StrEnum):
    """What an artifact is."""

    SENSOR_PACKAGE = "sensor_package"  # the sensor for one OS family (installer + drivers/modules)
    CONTENT = "content"  # a content / channel file the sensor parses


class CountField(BaseModel):
    """A number in a content file's header that says how many records (or bytes) follow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    offset: int = Field(ge=0, le=1 << 20)
    size: Literal[1, 2, 4, 8] = 4
    byteorder: Literal["little", "big"] = "little"


class ContentSchema(BaseModel):
    """What the candidate declares about a content file's layout, so variants can target it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header_size: int | None = Field(None, ge=1, le=1 << 20, description="bytes of the fixed header")
    count_fields: list[CountField] = Field(default_factory=list)


#: A Windows sensor's health check is the name of its service (the probe looks it up by name).
WINDOWS_SERVICE_NAME = r"^[A-Za-z0-9_.-]{1,128}$"


class Artifact(BaseModel):
    """One pinned file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: ArtifactKind
    os_family: str | None = None
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    sensor_version: str | None = Field(
        None,
        pattern=r"^[0-9A-Za-z][0-9A-Za-z.+~-]{0,63}$",
        description="sensor packages: the sensor release inside (default: the candidate's version)",
    )
    health_check: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="sensor packages: on Linux a shell command run as root in the guest after every "
        "boot once installed (exit status 0: healthy); on Windows the name of the sensor's service",
    )
    schema_: ContentSchema | None = Field(None, alias="schema", description="content files: layout")

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> "Artifact":
        if self.kind is ArtifactKind.SENSOR_PACKAGE and not self.os_family:
            raise ValueError("a sensor_package must name its os_family")
        if self.kind is not ArtifactKind.SENSOR_PACKAGE and (self.sensor_version or self.health_check):
            raise ValueError("sensor_version and health_check belong to sensor_package artifacts")
        if (
            self.os_family == "windows"
            and self.health_check is not None
            and not re.match(WINDOWS_SERVICE_NAME, self.health_check)
        ):
            raise ValueError(
                f"health_check {self.health_check!r}: a Windows sensor's health check is the name of its "
                "service (up to 128 letters, digits, '_', '.', '-')"
            )
        if self.kind is not ArtifactKind.CONTENT and self.schema_ is not None:
            raise ValueError("schema belongs to content artifacts")
        return self


class CandidateManifest(BaseModel):
    """candidate.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str = Field(min_length=1)
    artifacts: list[Artifact] = Field(min_length=1)


class Candidate:
    """A verified candidate: the manifest plus where its files are."""

    def __init__(self, manifest: CandidateManifest, root: Path) -> None:
        self.manifest = manifest
        self.root = root

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def path_of(self, artifact: Artifact) -> Path:
        return (self.root / artifact.path).resolve()

    def sensor_version_of(self, artifact: Artifact) -> str:
        return artifact.sensor_version or self.version

    def sensor_packages(self, os_family: str) -> list[Artifact]:
        return [
            a
            for a in self.manifest.artifacts
            if a.kind is ArtifactKind.SENSOR_PACKAGE and a.os_family == os_family
        ]

    def sensor_package(self, os_family: str, sensor_version: str | None = None) -> Artifact | None:
        """The package for one family; without a version, the one of the candidate's own release
        (or the only one there is)."""
        packages = self.sensor_packages(os_family)
        wanted = sensor_version or self.version
        exact = [a for a in packages if self.sensor_version_of(a) == wanted]
        if exact:
            return exact[0]
        return packages[0] if sensor_version is None and len(packages) == 1 else None

    def content_files(self) -> list[Artifact]:
        return [a for a in self.manifest.artifacts if a.kind is ArtifactKind.CONTENT]

    def artifacts_for(self, os_family: str, sensor_version: str | None = None) -> list[Artifact]:
        package = self.sensor_package(os_family, sensor_version)
        return ([package] if package else []) + self.content_files()

    def facts(self) -> CandidateFacts:
        return CandidateFacts(
            name=self.name,
            version=self.version,
            os_families=frozenset(
                a.os_family
                for a in self.manifest.artifacts
                if a.kind is ArtifactKind.SENSOR_PACKAGE and a.os_family
            ),
            artifact_digests={a.name: a.sha256 for a in self.manifest.artifacts},
            sensor_versions={
                family: tuple(sorted({self.sensor_version_of(a) for a in self.sensor_packages(family)}))
                for family in {a.os_family for a in self.manifest.artifacts if a.os_family}
            },
            content_layout=self.content_layout(),
        )

    def content_bytes(self, artifact: Artifact, variant: str, seed: int) -> bytes:
        """What a cell installs for one content file: as shipped, or a variant generated from it
        (deterministic: the same seed gives the same bytes on every machine)."""
        data = self.path_of(artifact).read_bytes()
        if variant == AS_SHIPPED:
            return data
        layout = layout_of(artifact.schema_) if artifact.schema_ is not None else None
        field_name = variant.split(":", 1)[1] if ":" in variant else None
        if field_name is not None and (
            layout is None or field_name not in {f.name for f in layout.count_fields}
        ):
            return data  # this file does not declare that count field: it travels as shipped
        return generate(data, variant, seed=seed, layout=layout)

    def content_layout(self) -> ContentLayout | None:
        """The layout the first content file declares (count-field variants need one)."""
        for artifact in self.content_files():
            if artifact.schema_ is not None:
                return layout_of(artifact.schema_)
        return None


def layout_of(schema: ContentSchema) -> ContentLayout:
    return ContentLayout(
        header_size=schema.header_size,
        count_fields=tuple(
            content_variants.CountField(name=f.name, offset=f.offset, size=f.size, byteorder=f.byteorder)
            for f in schema.count_fields
        ),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_candidate(path: Path) -> Candidate:
    """Read candidate.yaml (or the directory holding it) and verify every artifact."""
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest_path.is_file():
        raise ConfigurationError(f"candidate: {manifest_path} not found")
    try:
        data = yaml.safe_load(manifest_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"candidate: {manifest_path}: {exc}") from exc
    try:
        manifest = CandidateManifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(
            f"candidate: {manifest_path} is invalid:\n{describe_validation_error(exc)}"
        ) from exc
    candidate = Candidate(manifest, manifest_path.parent.resolve())
    problems = []
    names = [a.name for a in manifest.artifacts]
    releases = [(a.os_family or "", candidate.sensor_version_of(a)) for a in manifest.artifacts]
    file_names = [Path(a.path).name for a in manifest.artifacts]
    for index, artifact in enumerate(manifest.artifacts):
        if names.count(artifact.name) > 1:
            problems.append(f"artifacts[{index}].name: {artifact.name!r} is used more than once")
        if file_names.count(file_names[index]) > 1:
            problems.append(
                f"artifacts[{index}].path: file name {file_names[index]!r} is used by another artifact too "
                "(guests stage artifacts by file name)"
            )
        release = (artifact.os_family or "", candidate.sensor_version_of(artifact))
        if artifact.os_family and releases.count(release) > 1:
            problems.append(
                f"artifacts[{index}].sensor_version: two {artifact.os_family} sensor packages are both "
                f"version {release[1]} (give each its sensor_version)"
            )
        file = candidate.path_of(artifact)
        if not file.is_relative_to(candidate.root):
            problems.append(
                f"artifacts[{index}].path: {artifact.path!r} points outside the candidate directory"
            )
        elif not file.is_file():
            problems.append(f"artifacts[{index}].path: file not found: {file}")
        elif (actual := sha256_of(file)) != artifact.sha256:
            problems.append(
                f"artifacts[{index}].sha256: {artifact.path} has sha256 {actual}, "
                f"the manifest pins {artifact.sha256}"
            )
    if problems:
        raise ConfigurationError(f"candidate: {manifest_path}:\n" + "\n".join(f"  {p}" for p in problems))
    return candidate
