"""The ansible inventory for one Windows cell: WinRM over HTTPS with NTLM and message encryption.

Pure: the same connection settings the channel's own executor uses (``WinRMTarget``) become the
``ansible_winrm_*`` variables of ansible's winrm connection plugin (which is pywinrm underneath),
so a playbook reaches the guest exactly as the readiness probe did.
"""

from collections.abc import Mapping
from typing import Any

from orchestrator.guests.windows.winrm_executor import WinRMTarget

WINDOWS_HOST = "guest"
"""The inventory name of the cell's guest; playbooks target ``hosts: all``."""


def windows_inventory(
    target: WinRMTarget,
    *,
    host_name: str = WINDOWS_HOST,
    host_vars: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An inventory (ansible-runner's dict form) with one host and its WinRM connection variables."""
    variables: dict[str, Any] = {
        "ansible_host": target.address,
        "ansible_port": target.port,
        "ansible_connection": "winrm",
        "ansible_shell_type": "powershell",
        "ansible_user": target.username,
        "ansible_password": target.password,
        "ansible_winrm_scheme": "https",
        "ansible_winrm_transport": "ntlm",
        "ansible_winrm_message_encryption": "always",
        "ansible_winrm_server_cert_validation": target.server_cert_validation,
        "ansible_winrm_operation_timeout_sec": target.operation_timeout_s,
        "ansible_winrm_read_timeout_sec": target.read_timeout_s,
        # The guest network has no proxy; one from the testbed's environment must not be used.
        "ansible_winrm_proxy": None,
    }
    if target.ca_trust_path:
        variables["ansible_winrm_ca_trust_path"] = target.ca_trust_path
    clashing = sorted(set(variables) & set(host_vars or {}))
    if clashing:
        raise ValueError(f"host_vars may not override connection variables: {', '.join(clashing)}")
    variables.update(host_vars or {})
    return {"all": {"hosts": {host_name: variables}}}
