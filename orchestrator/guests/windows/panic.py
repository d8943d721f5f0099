"""The stop code as the hypervisor saw it: Hyper-V crash MSRs reported by QEMU and libvirt.

When Windows bugchecks with the ``hv-crash`` enlightenment on (``<panic model='hyperv'/>``), it
writes the stop code and its four parameters into the crash MSRs before it dies. QEMU reports them
in the ``GUEST_PANICKED`` event (QAPI ``GuestPanicInformationHyperV``: arg1 = stop code,
arg2..arg5 = parameters 1..4), and libvirt writes the same numbers into the domain's log as
``<timestamp>: panic hyper-v: arg1='0x50', arg2='0x...', ...`` (format string in libvirt's qemu
driver: ``hyper-v: arg1='0x%llx', arg2='0x%llx', arg3='0x%llx', arg4='0x%llx', arg5='0x%llx'``).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class BugcheckSource(StrEnum):
    """Where a stop code was read."""

    PANIC_EVENT = "guest_panicked_event"  # QEMU's GUEST_PANICKED, via libvirt's QEMU monitor events
    DOMAIN_LOG = "domain_log"  # libvirt's "panic hyper-v:" line in the domain log
    EVENT_1001 = "event_1001"  # System log, BugCheck (WER-SystemErrorReporting) after the reboot
    EVENT_41 = "event_41"  # System log, Kernel-Power: the previous boot ended without a clean shutdown
    MINIDUMP = "minidump"  # the dump header in C:\Windows\Minidump


@dataclass(frozen=True)
class Bugcheck:
    """A stop code and its four parameters."""

    code: int
    parameters: tuple[int, int, int, int]
    source: BugcheckSource

    def parameters_hex(self) -> list[str]:
        return [f"0x{value:x}" for value in self.parameters]


_LOG_LINE = re.compile(r"panic hyper-v:(?P<arguments>.*)$", re.MULTILINE)
_ARGUMENT = re.compile(r"arg(?P<index>[1-5])='?(?P<value>0x[0-9a-fA-F]+|\d+)'?")
_UINT64 = (1 << 64) - 1


def _number(value: object) -> int | None:
    """A crash MSR value: JSON gives an int; anything else that reads as one is accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value, 0)
        except ValueError:
            return None
    else:
        return None
    return number if 0 <= number <= _UINT64 else None


def _from_arguments(arguments: Mapping[int, int], source: BugcheckSource) -> Bugcheck | None:
    code = arguments.get(1)
    if not code:  # no stop code: a Linux guest's crash MSRs, or nothing at all
        return None
    parameters = (arguments.get(2, 0), arguments.get(3, 0), arguments.get(4, 0), arguments.get(5, 0))
    return Bugcheck(code, parameters, source)


def bugcheck_from_panic_info(details: Mapping[str, object] | None) -> Bugcheck | None:
    """The stop code in a ``GUEST_PANICKED`` payload: the event's ``data`` object (``{"action":
    ..., "info": {"type": "hyper-v", "arg1": ...}}``) or its ``info`` member alone."""
    if not details:
        return None
    info = details.get("info", details)
    if not isinstance(info, Mapping) or info.get("type") != "hyper-v":
        return None
    arguments = {}
    for index in range(1, 6):
        number = _number(info.get(f"arg{index}"))
        if number is not None:
            arguments[index] = number
    return _from_arguments(arguments, BugcheckSource.PANIC_EVENT)


def bugcheck_from_domain_log(text: str) -> Bugcheck | None:
    """The stop code of the last ``panic hyper-v:`` line libvirt wrote into the domain log."""
    lines = _LOG_LINE.findall(text)
    if not lines:
        return None
    arguments = {
        int(match.group("index")): int(match.group("value"), 0) for match in _ARGUMENT.finditer(lines[-1])
    }
    return _from_arguments(arguments, BugcheckSource.DOMAIN_LOG)
