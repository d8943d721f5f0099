"""Is KVM usable? Read from /proc/cpuinfo text and the device, never assumed."""

import pytest

from orchestrator.adapters.kvm_probe import KvmVerdict, cpu_has_virtualization, probe_kvm

pytestmark = pytest.mark.unit

INTEL = "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov vmx smx est tm2 ssse3\n"
AMD = "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov svm extapic cr8_legacy\n"
NESTED_WITHOUT = "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm abm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (f"processor\t: 0\nvendor_id\t: GenuineIntel\n{INTEL}bugs\t\t: spectre_v1\n", True),
        (f"processor\t: 0\nvendor_id\t: AuthenticAMD\n{AMD}", True),
        (f"processor\t: 0\n{NESTED_WITHOUT}", False),
        ("processor\t: 0\nvendor_id\t: GenuineIntel\n", False),  # no flags line at all
        ("", False),
        ("flags\t\t: vmxnet svmx\n", False),  # whole flags only
        ("flags\t\t:\n", False),
        ("vmx flags\t: vmx\n", False),  # the per-feature line of newer kernels is not 'flags'
        (f"processor\t: 0\n{NESTED_WITHOUT}\nprocessor\t: 1\n{INTEL}", False),  # the first CPU decides
        ("flags : vmx\n", True),
    ],
    ids=[
        "intel",
        "amd",
        "nested-without-extensions",
        "no-flags-line",
        "empty",
        "substrings-do-not-count",
        "empty-flags",
        "vmx-flags-line",
        "first-cpu-decides",
        "single-space",
    ],
)
def test_cpu_has_virtualization(cpuinfo, expected):
    assert cpu_has_virtualization(cpuinfo) is expected


def test_probe_kvm_without_the_device(tmp_path):
    missing = tmp_path / "kvm"
    verdict = probe_kvm(device=missing, cpuinfo=tmp_path / "cpuinfo-is-never-read")
    assert verdict == KvmVerdict(False, f"{missing} does not exist")
    assert verdict.domain_type == "qemu"


def test_probe_kvm_on_a_device_that_is_not_kvm(tmp_path):
    not_kvm = tmp_path / "kvm"
    not_kvm.write_bytes(b"")
    verdict = probe_kvm(device=not_kvm, cpuinfo=tmp_path / "cpuinfo")
    assert not verdict.usable
    assert verdict.reason.startswith(f"{not_kvm} refuses to create a VM: ")
    assert verdict.domain_type == "qemu"


@pytest.mark.parametrize(("usable", "domain_type"), [(True, "kvm"), (False, "qemu")])
def test_verdict_domain_type(usable, domain_type):
    assert KvmVerdict(usable, "why").domain_type == domain_type
