"""Domain XML composed from small parts: a pure function of a spec, compared verbatim in tests.

A family's spec (``DomainSpec`` for Linux, ``WindowsDomainSpec``) is first composed into
``DomainParts`` — firmware and boot, features, CPU, clock, devices, panic model, TPM, video —
each a small typed value decided by one function; one Jinja2 template set (autoescaped, one file
per part) renders the parts for both families. The pattern is testcloud's domain_configuration:
the same parts serve several guest kinds.
"""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined

from orchestrator.errors import ConfigurationError

METADATA_NAMESPACE = "urn:endpoint-testbed:cell:1"
"""Marks domains the testbed owns, so they can be found again after a restart."""

DOMAIN_PREFIX = "tb-"

DomainType = Literal["kvm", "qemu"]

_environment = Environment(
    loader=PackageLoader("orchestrator", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    # Block tags sit on lines of their own in the part templates and leave no trace in the output.
    trim_blocks=True,
    lstrip_blocks=True,
)


# -- firmware ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UefiFirmware:
    """An OVMF build: the read-only code and the variable store every domain gets a copy of.

    Defaults are the files Debian's ``ovmf`` package installs (``dpkg -L ovmf``); other
    distributions put them elsewhere (Fedora: /usr/share/edk2/ovmf/).
    """

    code: Path
    vars_template: Path
    secure_boot: bool


OVMF_DIR = Path("/usr/share/OVMF")
OVMF = UefiFirmware(OVMF_DIR / "OVMF_CODE_4M.fd", OVMF_DIR / "OVMF_VARS_4M.fd", secure_boot=False)
"""UEFI without Secure Boot: an empty variable store, no SMM needed."""
OVMF_SECURE_BOOT = UefiFirmware(
    # OVMF_CODE_4M.ms.fd links to the SMM build; the .ms vars have Microsoft's keys enrolled and
    # Secure Boot switched on, as Windows 11 requires.
    OVMF_DIR / "OVMF_CODE_4M.ms.fd",
    OVMF_DIR / "OVMF_VARS_4M.ms.fd",
    secure_boot=True,
)


# -- what a family asks for -------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainSpec:
    """Everything a Linux domain definition is made from (direct kernel boot, isa pvpanic)."""

    name: str
    run_id: str
    cell_id: str
    image_name: str
    image_digest: str
    domain_type: DomainType
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    network: str
    mac: str
    console_log: Path
    network_filter: str | None = None  # an nwfilter on the guest's interface
    network_filter_parameters: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1


LinuxDomainSpec = DomainSpec


@dataclass(frozen=True)
class WindowsDomainSpec:
    """Everything a Windows domain definition is made from (UEFI, Hyper-V crash MSRs, TPM)."""

    name: str
    run_id: str
    cell_id: str
    image_name: str
    image_digest: str
    domain_type: DomainType
    memory_mib: int
    vcpus: int
    disk: Path
    nvram: Path  # this domain's own variable store, created by libvirt from the template
    network: str
    mac: str
    console_log: Path
    firmware: UefiFirmware = OVMF_SECURE_BOOT
    nvram_template: Path | None = None  # the image's variable store; None: the firmware's template
    network_filter: str | None = None
    network_filter_parameters: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1


# -- the parts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The metadata that lets a restarted testbed find its domains and their cells again."""

    run_id: str
    cell_id: str
    attempt: int
    image_name: str
    image_digest: str


@dataclass(frozen=True)
class DirectKernelBoot:
    """QEMU loads the image's kernel and initrd itself: no bootloader in the disk."""

    kernel: Path
    initrd: Path
    cmdline: str


@dataclass(frozen=True)
class UefiBoot:
    """OVMF from pflash with a per-domain variable store; boots the disk's EFI system partition."""

    firmware: UefiFirmware
    nvram: Path
    nvram_template: Path


@dataclass(frozen=True)
class HypervEnlightenments:
    """The Hyper-V interfaces Windows uses when it finds them: faster, and without them Windows
    under KVM takes spurious watchdog timeouts (0x101 CLOCK_WATCHDOG_TIMEOUT) that are nobody's bug.
    The crash MSRs that carry the stop code are switched on by the hyperv panic device."""

    spinlock_retries: int = 8191


@dataclass(frozen=True)
class Features:
    acpi_for_pvpanic: bool  # say why ACPI is there: the isa pvpanic device is found through it
    apic: bool
    hyperv: HypervEnlightenments | None
    smm: bool  # Secure Boot firmware refuses to run without SMM
    vmport_off: bool


@dataclass(frozen=True)
class Timer:
    name: str
    tickpolicy: str | None = None
    present: bool | None = None


@dataclass(frozen=True)
class Interface:
    network: str
    mac: str
    filter: str | None
    filter_parameters: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Panic:
    """How the guest tells the hypervisor it crashed: isa pvpanic (Linux), Hyper-V MSRs (Windows)."""

    model: Literal["isa", "hyperv"]
    iobase: str | None = None


@dataclass(frozen=True)
class DomainParts:
    """A domain as the template renders it; each field decided by one composing function."""

    domain_type: DomainType
    name: str
    identity: Identity
    memory_mib: int
    vcpus: int
    machine: Literal["pc", "q35"]
    boot: DirectKernelBoot | UefiBoot
    features: Features
    cpu_passthrough: bool
    clock_timers: tuple[Timer, ...]
    no_sleep: bool  # a guest that suspends looks hung
    disk: Path
    interface: Interface
    console_log: Path
    tpm: bool
    video: str | None
    panic: Panic


# -- composing -----------------------------------------------------------------------------------


# libvirt's nwfilter_params.rng: what a filter parameter's name and value may be made of.
_FILTER_PARAMETER_NAME = re.compile(r"[a-zA-Z0-9_]+")
_FILTER_PARAMETER_VALUE = re.compile(r"[a-zA-Z0-9_.:]+")


def _interface(network: str, mac: str, nwfilter: str | None, parameters: Mapping[str, str]) -> Interface:
    if parameters and nwfilter is None:
        raise ConfigurationError("network_filter_parameters: given without a network_filter")
    for name, value in parameters.items():
        if not _FILTER_PARAMETER_NAME.fullmatch(name) or not _FILTER_PARAMETER_VALUE.fullmatch(value):
            raise ConfigurationError(
                f"network_filter_parameters: {name!r}={value!r} is not a libvirt filter parameter "
                "(names: letters, digits, _; values: also '.' and ':')"
            )
    return Interface(network, mac, nwfilter, tuple(sorted(parameters.items())))


def _hyperv_clock() -> tuple[Timer, ...]:
    # Windows's own recommendations for QEMU guests: catch up lost RTC ticks, no HPET (Windows
    # would prefer it and it is slow), and the Hyper-V reference clock the stimer feature needs.
    return (
        Timer("rtc", tickpolicy="catchup"),
        Timer("pit", tickpolicy="delay"),
        Timer("hpet", present=False),
        Timer("hypervclock", present=True),
    )


def compose_linux(spec: DomainSpec) -> DomainParts:
    return DomainParts(
        domain_type=spec.domain_type,
        name=spec.name,
        identity=Identity(spec.run_id, spec.cell_id, spec.attempt, spec.image_name, spec.image_digest),
        memory_mib=spec.memory_mib,
        vcpus=spec.vcpus,
        machine="pc",
        boot=DirectKernelBoot(spec.kernel, spec.initrd, spec.cmdline),
        features=Features(acpi_for_pvpanic=True, apic=False, hyperv=None, smm=False, vmport_off=False),
        cpu_passthrough=spec.domain_type == "kvm",
        clock_timers=(),
        no_sleep=False,
        disk=spec.disk,
        interface=_interface(spec.network, spec.mac, spec.network_filter, spec.network_filter_parameters),
        console_log=spec.console_log,
        tpm=False,
        video=None,
        panic=Panic("isa", iobase="0x505"),
    )


def compose_windows(spec: WindowsDomainSpec) -> DomainParts:
    if spec.domain_type != "kvm":
        # QEMU refuses the Hyper-V crash MSRs under TCG, and Windows would take hours to boot.
        raise ConfigurationError(
            f"image {spec.image_name}: Windows guests need a KVM host; this host only offers emulation (TCG)"
        )
    return DomainParts(
        domain_type=spec.domain_type,
        name=spec.name,
        identity=Identity(spec.run_id, spec.cell_id, spec.attempt, spec.image_name, spec.image_digest),
        memory_mib=spec.memory_mib,
        vcpus=spec.vcpus,
        machine="q35",
        boot=UefiBoot(spec.firmware, spec.nvram, spec.nvram_template or spec.firmware.vars_template),
        features=Features(
            acpi_for_pvpanic=False,
            apic=True,
            hyperv=HypervEnlightenments(),
            smm=spec.firmware.secure_boot,
            vmport_off=True,
        ),
        cpu_passthrough=True,
        clock_timers=_hyperv_clock(),
        no_sleep=True,
        disk=spec.disk,
        interface=_interface(spec.network, spec.mac, spec.network_filter, spec.network_filter_parameters),
        console_log=spec.console_log,
        tpm=True,  # Windows 11 refuses to install without TPM 2.0; the others use it for BitLocker/VBS
        # Standard VGA: Windows's basic display driver and OVMF's GOP both drive it with no extra
        # driver, and QEMU's screendump (virDomainScreenshot) reads it.
        video="vga",
        panic=Panic("hyperv"),
    )


def compose(spec: DomainSpec | WindowsDomainSpec) -> DomainParts:
    return compose_windows(spec) if isinstance(spec, WindowsDomainSpec) else compose_linux(spec)


def render_parts(parts: DomainParts) -> str:
    return _environment.get_template("domain.xml.j2").render(d=parts, namespace=METADATA_NAMESPACE)


def render_domain_xml(spec: DomainSpec | WindowsDomainSpec) -> str:
    """The domain definition of a spec; ``ConfigurationError`` when the spec cannot run as asked."""
    return render_parts(compose(spec))


# -- names --------------------------------------------------------------------------------------


def domain_name(run_id: str, cell_id: str) -> str:
    """A libvirt-safe, unique, recognizable name: tb-<run>-<cell>."""
    # '+' joins coordinates and never appears inside a name, so '__' keeps names apart.
    slug = re.sub(r"[^a-zA-Z0-9_.-]", "_", cell_id.replace("+", "__"))
    return f"{DOMAIN_PREFIX}{run_id}-{slug}"


def mac_for(name: str) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range, derived from the domain name."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def private_boot_paths(overlay: Path) -> tuple[Path, Path]:
    """Where a direct-kernel-boot domain's own copies of the kernel and initrd live: beside its
    disk overlay, removed with it."""
    return overlay.with_name(f"{overlay.stem}.vmlinuz"), overlay.with_name(f"{overlay.stem}.initrd")


def nvram_path(overlay: Path) -> Path:
    """Where a domain's UEFI variable store lives: beside its disk overlay, removed with it."""
    return overlay.with_name(f"{overlay.stem}_VARS.fd")
