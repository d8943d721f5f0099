"""The Windows guest family: bugcheck capture, System event parsing, minidump reading, the WinRM
executor, the guest channel and its ansible inventory, and ``WindowsFamily``, which wires them into
the engine's generic libvirt domain cell.

The domain definition lives with the Linux one (``adapters.domain_xml.WindowsDomainSpec``).
"""

from orchestrator.guests.windows.bugchecks import BUGCHECK_NAMES, bugcheck_name, bugcheck_title, stop_code
from orchestrator.guests.windows.channel import (
    GuestEndpoint,
    GuestNotReadyError,
    HealthReport,
    StepOutcome,
    StepRunner,
    WindowsChannel,
    WindowsChannelConfig,
)
from orchestrator.guests.windows.crash import WindowsCrashKind, WindowsCrashReport, windows_crash_report
from orchestrator.guests.windows.events import SystemEvent, bugcheck_from_event, parse_events
from orchestrator.guests.windows.family import WindowsFamily
from orchestrator.guests.windows.guest_channel import WindowsGuestChannel, bugcheck_findings
from orchestrator.guests.windows.inventory import windows_inventory
from orchestrator.guests.windows.minidump import Minidump, faulting_driver, parse_minidump
from orchestrator.guests.windows.panic import (
    Bugcheck,
    BugcheckSource,
    bugcheck_from_domain_log,
    bugcheck_from_panic_info,
)
from orchestrator.guests.windows.playbook_vars import StagedArtifact, candidate_install_vars, evidence_vars
from orchestrator.guests.windows.winrm_executor import (
    CommandExecutor,
    CommandResult,
    PyWinRMExecutor,
    WinRMAuthenticationError,
    WinRMCommandTimeoutError,
    WinRMTarget,
    WinRMUnreachableError,
)

__all__ = [
    "BUGCHECK_NAMES",
    "Bugcheck",
    "BugcheckSource",
    "CommandExecutor",
    "CommandResult",
    "GuestEndpoint",
    "GuestNotReadyError",
    "HealthReport",
    "Minidump",
    "PyWinRMExecutor",
    "StagedArtifact",
    "StepOutcome",
    "StepRunner",
    "SystemEvent",
    "WinRMAuthenticationError",
    "WinRMCommandTimeoutError",
    "WinRMTarget",
    "WinRMUnreachableError",
    "WindowsChannel",
    "WindowsChannelConfig",
    "WindowsCrashKind",
    "WindowsCrashReport",
    "WindowsFamily",
    "WindowsGuestChannel",
    "bugcheck_findings",
    "bugcheck_from_domain_log",
    "bugcheck_from_event",
    "bugcheck_from_panic_info",
    "bugcheck_name",
    "bugcheck_title",
    "candidate_install_vars",
    "evidence_vars",
    "faulting_driver",
    "parse_events",
    "parse_minidump",
    "stop_code",
    "windows_crash_report",
    "windows_inventory",
]
