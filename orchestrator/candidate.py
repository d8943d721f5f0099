"""The candidate: the exact artifacts under test, each pinned by sha256 in candidate.yaml.

Loading checks every file exists and matches its pinned digest before anything starts; the
install playbook checks the digests again inside each guest.
"""

import hashlib
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.core.matrix import CandidateFacts
from orchestrator.errors import ConfigurationError, describe_validation_error

MANIFEST_NAME = "candidate.yaml"


class ArtifactKind(StrEnum):
    """What an artifact is."""

    SENSOR_PACKAGE = "sensor_package"  # the sensor for one OS family (installer + drivers/modules)
    CONTENT = "content"  # a content / channel file the sensor parses


class Artifact(BaseModel):
    """One pinned file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: ArtifactKind
    os_family: str | None = None
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _package_names_family(self) -> "Artifact":
        if self.kind is ArtifactKind.SENSOR_PACKAGE and not self.os_family:
            raise ValueError("a sensor_package must name its os_family")
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

    def sensor_package(self, os_family: str) -> Artifact | None:
        return next(
            (
                a
                for a in self.manifest.artifacts
                if a.kind is ArtifactKind.SENSOR_PACKAGE and a.os_family == os_family
            ),
            None,
        )

    def content_files(self) -> list[Artifact]:
        return [a for a in self.manifest.artifacts if a.kind is ArtifactKind.CONTENT]

    def artifacts_for(self, os_family: str) -> list[Artifact]:
        package = self.sensor_package(os_family)
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
    file_names = [Path(a.path).name for a in manifest.artifacts]
    for index, artifact in enumerate(manifest.artifacts):
        if names.count(artifact.name) > 1:
            problems.append(f"artifacts[{index}].name: {artifact.name!r} is used more than once")
        if file_names.count(file_names[index]) > 1:
            problems.append(
                f"artifacts[{index}].path: file name {file_names[index]!r} is used by another artifact too "
                "(guests stage artifacts by file name)"
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
