"""Golden image definitions as written in images/<family>/*.yaml, and the digest that names a build."""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from orchestrator.errors import ConfigurationError, describe_validation_error

BUILDER_REVISION = "2026-11-26.1"
"""Bumped whenever a builder changes what it puts into an image, so cached builds are redone."""

_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
CRASH_CMDLINE = (
    "oops=panic",  # every oops becomes a panic the hypervisor hears of (pvpanic)
    "panic=0",  # never reboot on panic: the crashed guest is preserved as evidence
    "softlockup_panic=1",  # a soft lockup becomes a titled panic, not a silent hang
    "hung_task_panic=1",  # so does a task blocked for minutes
    "sysctl.kernel.panic_on_rcu_stall=1",  # and an RCU stall
    "unknown_nmi_panic",  # the NMI the testbed injects into a silent guest makes it dump its stack
    "nmi_watchdog=1",  # the hard lockup detector, where the (virtual) CPU has the counters for it
)
"""Kernel parameters every Linux image boots with, so that no crash or lockup goes unreported; the
build refuses a command line without any of them."""

# Soft lockups after 60 s, not 20 s: under TCG a busy host can starve a vCPU for many seconds, and
# a false lockup panic would fail a good candidate.
_TCG_TOLERANCE = "watchdog_thresh=30"
_DEFAULT_CMDLINE = (
    f"root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 {' '.join(CRASH_CMDLINE)} {_TCG_TOLERANCE}"
)


def _crash_cmdline(cmdline: str) -> str:
    missing = [parameter for parameter in CRASH_CMDLINE if parameter not in cmdline.split()]
    if missing:
        raise ValueError(f"the command line lacks {', '.join(missing)}: crashes or hangs would go unreported")
    return cmdline


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

    @field_validator("kernel_cmdline")
    @classmethod
    def _reports_every_crash(cls, cmdline: str) -> str:
        return _crash_cmdline(cmdline)


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
    kernel_cmdline: str = f"console=ttyS0,115200 {' '.join(CRASH_CMDLINE)} {_TCG_TOLERANCE}"

    @field_validator("kernel_cmdline")
    @classmethod
    def _reports_every_crash(cls, cmdline: str) -> str:
        return _crash_cmdline(cmdline)


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
