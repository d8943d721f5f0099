"""Golden image definitions as written in images/<family>/*.yaml, and the digest that names a build."""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.errors import ConfigurationError, describe_validation_error

BUILDER_REVISION = "2026-11-25.2"
"""Bumped whenever a builder changes what it puts into an image, so cached builds are redone."""

_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_DEFAULT_CMDLINE = "root=/dev/vda rw console=ttyS0,115200 oops=panic panic=0 net.ifnames=0"


class DebianImage(BaseModel):
    """A Debian guest made with debootstrap, with one kernel ABI from Debian's packages."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["debian"] = "debian"
    name: str = Field(pattern=_NAME)
    description: str = ""
    os_family: Literal["linux"] = "linux"
    os_version: str
    suite: str
    kernel: str = Field(
        pattern=r"^\d+\.\d+\.\d+-\d+-[a-z0-9-]+$", description="kernel ABI, e.g. 6.1.0-56-amd64"
    )
    packages: list[str] = Field(min_length=1)
    disk_size_mib: int = Field(2048, ge=512)
    kernel_cmdline: str = _DEFAULT_CMDLINE


class InitramfsImage(BaseModel):
    """A busybox guest that lives in its initramfs: a control guest with scripted behaviour."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["busybox-initramfs"] = "busybox-initramfs"
    name: str = Field(pattern=_NAME)
    description: str = ""
    os_family: Literal["linux"] = "linux"
    os_version: str = "busybox"
    kernel_from: str = Field(description="a debian image whose kernel this guest boots")
    init: str = Field(min_length=1, description="the /init shell script")
    kernel_cmdline: str = "console=ttyS0,115200 panic=0"


ImageDefinition = Annotated[DebianImage | InitramfsImage, Field(discriminator="kind")]
_DEFINITION: TypeAdapter[DebianImage | InitramfsImage] = TypeAdapter(ImageDefinition)


def load_definition(path: Path) -> DebianImage | InitramfsImage:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"image definition {path}: {exc}") from exc
    try:
        return _DEFINITION.validate_python(data)
    except ValidationError as exc:
        raise ConfigurationError(f"image definition {path}:\n{describe_validation_error(exc)}") from exc


def load_definitions(directories: list[Path]) -> dict[str, DebianImage | InitramfsImage]:
    definitions: dict[str, DebianImage | InitramfsImage] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            definition = load_definition(path)
            if definition.name in definitions:
                raise ConfigurationError(f"image {definition.name!r} is defined twice (again in {path})")
            definitions[definition.name] = definition
    return definitions


def definition_digest(definition: DebianImage | InitramfsImage, inputs: dict[str, str] | None = None) -> str:
    """sha256 over the definition, the builder revision and the digests of inputs it builds on."""
    canonical = json.dumps(
        {
            "definition": definition.model_dump(mode="json"),
            "builder": BUILDER_REVISION,
            "inputs": inputs or {},
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
