"""A Windows image where no host has KVM: refused before the run exists, whoever starts it."""

import pytest
import yaml

from orchestrator.config import HostConfig, Settings
from orchestrator.engine import gate as engine_gate
from orchestrator.engine.gate import prepare_gate, refuse_unrunnable
from orchestrator.errors import ConfigurationError
from orchestrator.images.catalog import ImageCatalog
from tests.unit.windows.cells import windows_record, write_candidate

pytestmark = pytest.mark.unit


class Host:
    """What the refusal asks of a connected host."""

    def __init__(self, name: str, domain_type: str, uri: str = "qemu:///system") -> None:
        self.name = name
        self.config = HostConfig(name=name, uri=uri)
        self._type = domain_type

    def domain_type(self) -> str:
        return self._type

    def close(self) -> None:
        """Nothing to close: never connected."""


@pytest.fixture
def windows_gate(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", hosts=[HostConfig(name="local")])
    ImageCatalog(settings.images_dir).put(windows_record(settings.images_dir))
    matrix = tmp_path / "windows.yaml"
    matrix.write_text(yaml.safe_dump({"name": "windows", "images": ["win11-24h2"], "reboots": 1}))
    return settings, prepare_gate(settings, matrix, write_candidate(tmp_path / "candidate"))


def test_refused_when_no_host_has_kvm(windows_gate):
    _, prepared = windows_gate
    hosts = [Host("local", "qemu"), Host("rack2", "qemu", "qemu+ssh://testbed@rack2/system")]
    with pytest.raises(ConfigurationError) as refused:
        refuse_unrunnable(prepared, hosts)
    assert str(refused.value) == (
        "image win11-24h2: windows guests need a KVM host, and the configured hosts offer only emulation "
        "(TCG): local (qemu:///system), rack2 (qemu+ssh://testbed@rack2/system)"
    )
    refuse_unrunnable(prepared, [Host("local", "qemu"), Host("rack2", "kvm")])  # one KVM host will do


def test_testbed_start_refuses_before_the_run_has_a_record(windows_gate):
    settings, prepared = windows_gate
    testbed = engine_gate.Testbed(settings)
    testbed._hosts = [Host("local", "qemu")]  # what open() would have connected; no libvirt needed here
    with pytest.raises(ConfigurationError, match="image win11-24h2: windows guests need a KVM host"):
        testbed.start(prepared, run_id="20261125-171500-ab12")
    assert not (settings.runs_dir / "20261125-171500-ab12").exists()
    testbed.close()
