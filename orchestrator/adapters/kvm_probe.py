"""Is hardware virtualization usable here, or must guests run under TCG?

Detected, not assumed: /dev/kvm can exist and even accept ioctls on machines where a real guest
under KVM hangs (nested setups without virtualization extensions). So KVM counts as usable only
when the device opens read-write, speaks API version 12, creates a VM, and the CPU advertises
vmx or svm.
"""

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_KVM_API_VERSION = 12


@dataclass(frozen=True)
class KvmVerdict:
    """Whether to use KVM, and why."""

    usable: bool
    reason: str

    @property
    def domain_type(self) -> str:
        return "kvm" if self.usable else "qemu"


def cpu_has_virtualization(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"vmx", "svm"})
    return False


def probe_kvm(device: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo")) -> KvmVerdict:
    if not device.exists():
        return KvmVerdict(False, f"{device} does not exist")
    try:
        handle = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return KvmVerdict(False, f"{device} cannot be opened read-write: {exc.strerror}")
    try:
        version = fcntl.ioctl(handle, _KVM_GET_API_VERSION, 0)
        if version != _KVM_API_VERSION:
            return KvmVerdict(False, f"{device} speaks KVM API {version}, not {_KVM_API_VERSION}")
        vm = fcntl.ioctl(handle, _KVM_CREATE_VM, 0)
        os.close(vm)
    except OSError as exc:
        return KvmVerdict(False, f"{device} refuses to create a VM: {exc.strerror}")
    finally:
        os.close(handle)
    if not cpu_has_virtualization(cpuinfo.read_text()):
        return KvmVerdict(False, "the CPU advertises neither vmx nor svm: KVM guests would not run")
    return KvmVerdict(True, "KVM is usable")
