"""Golden image definitions as written in images/<family>/*.yaml, and the digest that names a build."""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from orchestrator.errors import ConfigurationError, describe_validation_error

BUILDER_REVISION = "2026-11-26.6"
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
    expected_outcome: Literal["hung", "boot_loop", "crashed"] | None = Field(
        None,
        description="a control image: how every cell on it must end; one that does counts as a pass, "
        "one that does not means the testbed's own detection is broken (inconclusive)",
    )

    @field_validator("kernel_cmdline")
    @classmethod
    def _reports_every_crash(cls, cmdline: str) -> str:
        return _crash_cmdline(cmdline)


FASTBOOT_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "crc32c_generic", "ext4",
    "pvpanic_mmio", "pvpanic_pci", "overlay",
)  # fmt: skip
"""What a fast-boot guest keeps of its kernel's modules: virtio devices, its root, pvpanic."""


class FastBootImage(BaseModel):
    """A Debian image booted without systemd (its fast-init as PID 1): the same root file system
    and kernel, ready in seconds instead of tens under TCG. For cells where the OS is not the point
    (fault samples, content variants, policies); the full image stays what customers run."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["debian-fastboot"] = "debian-fastboot"
    name: str = Field(pattern=_NAME)
    description: str = ""
    os_family: Literal["linux"] = "linux"
    base: str = Field(description="the debian image whose packages and kernel it has")
    modules: list[str] = Field(
        default_factory=lambda: list(FASTBOOT_MODULES),
        min_length=1,
        description="kernel modules kept (with what they depend on); the rest of the tree is removed",
    )
    expected_outcome: Literal["hung", "boot_loop", "crashed"] | None = None
    crash_from_boot: int | None = Field(
        None,
        ge=2,
        description="broken on purpose: from this boot on (the first is 1) the guest crashes as it "
        "comes up, whatever is installed — an image fault a control twin must expose",
    )


class WindowsImage(BaseModel):
    """A Windows guest installed by Packer from the user's ISO (images/windows/: templates, answer
    files, scripts). The ISO is not in the definition: it is given to ``testbed images build``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["windows-packer"] = "windows-packer"
    name: str = Field(pattern=_NAME)
    description: str = ""
    os_family: Literal["windows"] = "windows"
    os_version: str = Field(min_length=1, description="e.g. windows-11-24h2")
    packer_vars: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]*\.pkrvars\.hcl$", description="file in images/windows/"
    )
    autounattend: str = Field(pattern=_NAME, description="directory in images/windows/unattend/")
    secure_boot: bool = Field(description="UEFI Secure Boot with Microsoft's keys (Windows 11)")
    tpm: bool = Field(description="a TPM 2.0 from swtpm")
    disk_size_mib: int = Field(65536, ge=32768)
    memory_mib: int = Field(4096, ge=2048)
    vcpus: int = Field(2, ge=1)
    username: str = Field("testbed", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,19}$")
    # A lab password for throwaway guests on an isolated network; WinRM and the answer files use it.
    password: str = Field("Testbed-Passw0rd!", min_length=8, pattern=r"^[^<>&'\"@]+$")
    virtio_win_iso: Path = Field(
        Path("/usr/share/virtio-win/virtio-win.iso"), description="virtio-win driver ISO on the build host"
    )
    build_timeout_s: int = Field(4 * 3600, ge=600)


AnyImageDefinition = DebianImage | InitramfsImage | FastBootImage | WindowsImage


ImageDefinition = Annotated[AnyImageDefinition, Field(discriminator="kind")]
_DEFINITION: TypeAdapter[AnyImageDefinition] = TypeAdapter(ImageDefinition)


def load_definition(path: Path) -> AnyImageDefinition:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"image definition {path}: {exc}") from exc
    try:
        return _DEFINITION.validate_python(data)
    except ValidationError as exc:
        raise ConfigurationError(f"image definition {path}:\n{describe_validation_error(exc)}") from exc


def load_definitions(directories: list[Path]) -> dict[str, AnyImageDefinition]:
    definitions: dict[str, AnyImageDefinition] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            definition = load_definition(path)
            if definition.name in definitions:
                raise ConfigurationError(f"image {definition.name!r} is defined twice (again in {path})")
            definitions[definition.name] = definition
    return definitions


def definition_digest(definition: AnyImageDefinition, inputs: dict[str, str] | None = None) -> str:
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
