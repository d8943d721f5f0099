"""The per-cell ansible inventory: WinRM connection variables matching the channel's own settings."""

import pytest

from orchestrator.guests.windows.inventory import WINDOWS_HOST, windows_inventory
from orchestrator.guests.windows.winrm_executor import WinRMTarget

pytestmark = pytest.mark.unit


def test_winrm_variables():
    target = WinRMTarget(
        address="192.168.123.7", username="testbed", password="pw", read_timeout_s=70, operation_timeout_s=60
    )
    inventory = windows_inventory(target)
    assert list(inventory["all"]["hosts"]) == [WINDOWS_HOST]
    host = inventory["all"]["hosts"][WINDOWS_HOST]
    assert host == {
        "ansible_host": "192.168.123.7",
        "ansible_port": 5986,
        "ansible_connection": "winrm",
        "ansible_shell_type": "powershell",
        "ansible_user": "testbed",
        "ansible_password": "pw",
        "ansible_winrm_scheme": "https",
        "ansible_winrm_transport": "ntlm",
        "ansible_winrm_message_encryption": "always",
        "ansible_winrm_server_cert_validation": "ignore",
        "ansible_winrm_operation_timeout_sec": 60,
        "ansible_winrm_read_timeout_sec": 70,
        "ansible_winrm_proxy": None,
    }


def test_a_ca_bundle_validates_the_certificate():
    target = WinRMTarget(
        address="a",
        username="u",
        password="p",
        server_cert_validation="validate",
        ca_trust_path="/etc/testbed/ca.pem",
    )
    host = windows_inventory(target)["all"]["hosts"][WINDOWS_HOST]
    assert host["ansible_winrm_server_cert_validation"] == "validate"
    assert host["ansible_winrm_ca_trust_path"] == "/etc/testbed/ca.pem"


def test_host_vars_are_added_but_never_replace_the_connection():
    target = WinRMTarget(address="a", username="u", password="p")
    host = windows_inventory(target, host_vars={"testbed_cell": "win11+dlp"})["all"]["hosts"][WINDOWS_HOST]
    assert host["testbed_cell"] == "win11+dlp"
    with pytest.raises(ValueError, match="ansible_winrm_transport"):
        windows_inventory(target, host_vars={"ansible_winrm_transport": "basic"})
