"""Settings: a YAML file, then TESTBED_* environment variables, then explicit overrides."""

import os
from pathlib import Path

import pytest

from orchestrator.config import HostConfig, load_settings
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

CONFIG = """\
state_dir: /srv/testbed
hosts:
  - name: local
    max_cells: 2
    accel: tcg
  - name: rack-7
    uri: qemu+ssh://root@rack-7/system
    pool_dir: /data/pool
    images_dir: /data/images
network_cidr: 10.77.0.0/24
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Whatever the developer's shell exports must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("TESTBED_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "testbed.yaml"
    path.write_text(CONFIG)
    return path


def invalid(path: Path, text: str) -> str:
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    return str(caught.value)


def test_settings_from_a_yaml_file(config_file):
    settings = load_settings(config_file)
    assert settings.state_dir == Path("/srv/testbed")
    assert settings.network_cidr == "10.77.0.0/24"
    assert settings.network_name == "endpoint-testbed"  # untouched defaults stay
    local, rack = settings.hosts
    assert (local.name, local.uri, local.max_cells, local.accel) == ("local", "qemu:///system", 2, "tcg")
    assert (rack.name, rack.uri, rack.max_cells, rack.accel) == (
        "rack-7",
        "qemu+ssh://root@rack-7/system",
        None,
        "auto",
    )
    assert settings.images_dir == Path("/srv/testbed/images")
    assert settings.runs_dir == Path("/srv/testbed/runs")
    assert settings.pool_dir(local) == Path("/srv/testbed/pool")
    assert settings.pool_dir(rack) == Path("/data/pool")
    assert settings.host_images_dir(local) == Path("/srv/testbed/images")
    assert settings.host_images_dir(rack) == Path("/data/images")


def test_environment_overrides_the_file(config_file, monkeypatch):
    monkeypatch.setenv("TESTBED_STATE_DIR", "/var/tmp/elsewhere")
    settings = load_settings(config_file)
    assert settings.state_dir == Path("/var/tmp/elsewhere")
    assert settings.network_cidr == "10.77.0.0/24"  # the rest still comes from the file
    assert [host.name for host in settings.hosts] == ["local", "rack-7"]


def test_environment_can_give_structured_values(config_file, monkeypatch):
    monkeypatch.setenv("TESTBED_HOSTS", '[{"name": "ci-runner", "max_cells": 1}]')
    (host,) = load_settings(config_file).hosts
    assert (host.name, host.max_cells) == ("ci-runner", 1)


def test_explicit_overrides_beat_environment_and_file(config_file, monkeypatch):
    monkeypatch.setenv("TESTBED_STATE_DIR", "/var/tmp/elsewhere")
    settings = load_settings(config_file, state_dir=Path("/opt/explicit"))
    assert settings.state_dir == Path("/opt/explicit")


def test_testbed_config_names_the_file(config_file, monkeypatch):
    monkeypatch.setenv("TESTBED_CONFIG", str(config_file))
    assert load_settings().state_dir == Path("/srv/testbed")


def test_without_a_file_there_is_one_local_host(monkeypatch, tmp_path):
    monkeypatch.setenv("TESTBED_STATE_DIR", str(tmp_path))
    settings = load_settings()
    assert [(host.name, host.uri) for host in settings.hosts] == [("local", "qemu:///system")]
    assert settings.state_dir == tmp_path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hosts:\n  - name: 'bad name'\n", "hosts.0.name: String should match pattern"),
        ("hosts:\n  - uri: qemu:///system\n", "hosts.0.name: Field required"),
        (
            "hosts:\n  - name: a\n    max_cells: 0\n",
            "hosts.0.max_cells: Input should be greater than or equal to 1",
        ),
        (
            "hosts:\n  - name: a\n  - name: b\n    accel: xen\n",
            "hosts.1.accel: Input should be 'auto', 'kvm' or 'tcg'",
        ),
        ("hosts:\n  - name: a\n    colour: red\n", "hosts.0.colour: Extra inputs are not permitted"),
        (
            "hosts:\n  - name: a\n  - name: b\n  - name: a\n",
            "hosts: Value error, host names must be unique: ['a', 'b', 'a']",
        ),
        ("hosts: []\n", "hosts: Value error, at least one host is needed"),
        ("colour: red\n", "colour: Extra inputs are not permitted"),
    ],
    ids=[
        "bad-host-name",
        "host-without-name",
        "zero-cells",
        "unknown-accel",
        "unknown-host-field",
        "duplicate-host-names",
        "no-hosts",
        "unknown-field",
    ],
)
def test_invalid_settings_name_the_field(tmp_path, text, fragment):
    path = tmp_path / "testbed.yaml"
    message = invalid(path, text)
    assert message.startswith(f"invalid settings in {path}:\n")
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("- local\n", "expected a mapping at the top level"), ("hosts: [local\n", "while parsing")],
)
def test_a_file_that_is_not_a_settings_mapping(tmp_path, text, fragment):
    path = tmp_path / "testbed.yaml"
    message = invalid(path, text)
    assert message.startswith(f"config file {path}: ")
    assert fragment in message


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigurationError, match=r"config file .*nope\.yaml: .*No such file"):
        load_settings(tmp_path / "nope.yaml")


def test_invalid_environment_is_a_configuration_error(config_file, monkeypatch):
    monkeypatch.setenv("TESTBED_HOSTS", '[{"name": "a"}, {"name": "a"}]')
    with pytest.raises(ConfigurationError, match="host names must be unique"):
        load_settings(config_file)


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("test:///default", True),
        ("qemu+ssh://root@rack-7/system", False),
        ("qemu+tls://rack-7.example/system", False),
        ("qemu", False),
    ],
)
def test_host_is_local(uri, local):
    assert HostConfig(name="h", uri=uri).is_local is local
