"""The Vagrantfile that brings up a Linux testbed host (vagrant-libvirt)."""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

VAGRANTFILE = Path(__file__).resolve().parents[3] / "vagrant" / "Vagrantfile"


def test_vagrantfile_is_valid_ruby():
    if shutil.which("ruby") is None:
        pytest.skip("ruby is not installed here (apt-get install ruby) to check the Vagrantfile's syntax")
    checked = subprocess.run(["ruby", "-c", str(VAGRANTFILE)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "Syntax OK" in checked.stdout


def test_vagrantfile_makes_a_libvirt_testbed_host():
    text = VAGRANTFILE.read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    assert "config.vm.provider :libvirt do |libvirt|" in text
    assert "libvirt.nested = true" in text  # the testbed's own guests run inside
    assert 'libvirt.cpu_mode = "host-passthrough"' in text
    assert '"/opt/endpoint-testbed", type: "rsync"' in text
    assert "make setup" in text
