"""What a Windows kernel minidump says about a crash: the stop code, and which driver faulted.

A small memory dump (C:\\Windows\\Minidump\\*.dmp, ``CrashDumpEnabled=3``) of a 64-bit kernel is a
``PAGEDU64`` dump of type 4 (triage). Its header holds the stop code and parameters (offset 0x38);
the triage header after it (offset 0x2000) points at the loaded-driver list, the string pool with
their names, and the faulting thread's stack. Layouts as documented by rizin's dmp_specs.h and
Microsoft's triage.h.

The faulting driver is the one whose image contains the address the stop code's parameters name
(0x50, 0x0A, 0xD1, 0x1E, 0x7E, 0x8E, 0x3B); without such an address (0xF7 reports none) it is the
first driver other than the kernel and the HAL with an address on the captured stack -- a
heuristic, stated as such in the report.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass

_SIGNATURE = b"PAGEDU64"
_HEADER_SIZE = 0x2000
_BUGCHECK_CODE = 0x38
_BUGCHECK_PARAMETERS = 0x40
_DUMP_TYPE = 0xF98
_TRIAGE_DUMP = 4
# TRIAGE_DUMP64 fields (offsets from its start, which is the end of the 0x2000-byte header)
_TRIAGE_CALL_STACK = 0x28  # CallStackOffset, SizeOfCallStack
_TRIAGE_DRIVER_LIST = 0x30  # DriverListOffset, DriverCount
_DRIVER_ENTRY_SIZE = 0x90  # DUMP_DRIVER_ENTRY64: name offset, padding, KLDR_DATA_TABLE_ENTRY64
_LDR_DLL_BASE = 0x30  # within KLDR_DATA_TABLE_ENTRY64
_LDR_SIZE_OF_IMAGE = 0x40
_MAX_DRIVERS = 4096
_MAX_NAME_CHARACTERS = 260

# Stop codes whose parameters name the faulting address, and which parameter (1-based) it is.
_FAULT_ADDRESS_PARAMETER = {
    0x0A: 4,  # IRQL_NOT_LESS_OR_EQUAL: address that referenced memory
    0xD1: 4,  # DRIVER_IRQL_NOT_LESS_OR_EQUAL: address that referenced memory
    0x50: 3,  # PAGE_FAULT_IN_NONPAGED_AREA: address that referenced memory (if known)
    0x1E: 2,  # KMODE_EXCEPTION_NOT_HANDLED: address where the exception occurred
    0x7E: 2,  # SYSTEM_THREAD_EXCEPTION_NOT_HANDLED: address where the exception occurred
    0x1000007E: 2,
    0x8E: 2,  # KERNEL_MODE_EXCEPTION_NOT_HANDLED: address where the exception occurred
    0x1000008E: 2,
    0x3B: 2,  # SYSTEM_SERVICE_EXCEPTION: address of the instruction that caused it
}
_KERNEL_IMAGES = frozenset({"ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe", "hal.dll"})


class MinidumpError(ValueError):
    """Not a 64-bit kernel minidump, or a damaged one."""


@dataclass(frozen=True)
class LoadedDriver:
    name: str
    base: int
    size: int

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size


@dataclass(frozen=True)
class Minidump:
    """The facts read from one dump file."""

    code: int
    parameters: tuple[int, int, int, int]
    triage: bool  # a small (triage) dump with a driver list and a stack
    drivers: tuple[LoadedDriver, ...] = ()
    stack: tuple[int, ...] = ()  # the faulting thread's stack, as 8-byte words


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _u64(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<Q", data, offset)[0]
    return value


def _dump_string(data: bytes, offset: int) -> str:
    """DUMP_STRING: a character count, then that many UTF-16LE characters."""
    count = _u32(data, offset)
    if count > _MAX_NAME_CHARACTERS or offset + 4 + 2 * count > len(data):
        raise MinidumpError(f"driver name at 0x{offset:x} runs past the dump")
    return data[offset + 4 : offset + 4 + 2 * count].decode("utf-16-le", errors="replace")


def _drivers(data: bytes, triage: int) -> tuple[LoadedDriver, ...]:
    offset, count = _u32(data, triage + _TRIAGE_DRIVER_LIST), _u32(data, triage + _TRIAGE_DRIVER_LIST + 4)
    if count > _MAX_DRIVERS or offset + count * _DRIVER_ENTRY_SIZE > len(data):
        raise MinidumpError(f"driver list of {count} entries at 0x{offset:x} runs past the dump")
    drivers = []
    for index in range(count):
        entry = offset + index * _DRIVER_ENTRY_SIZE
        ldr = entry + 8
        drivers.append(
            LoadedDriver(
                name=_dump_string(data, _u32(data, entry)),
                base=_u64(data, ldr + _LDR_DLL_BASE),
                size=_u32(data, ldr + _LDR_SIZE_OF_IMAGE),
            )
        )
    return tuple(drivers)


def _stack(data: bytes, triage: int) -> tuple[int, ...]:
    offset, size = _u32(data, triage + _TRIAGE_CALL_STACK), _u32(data, triage + _TRIAGE_CALL_STACK + 4)
    if not offset or offset + size > len(data):
        return ()
    return tuple(_u64(data, offset + position) for position in range(0, size - size % 8, 8))


def parse_minidump(data: bytes) -> Minidump:
    if len(data) < _HEADER_SIZE or data[:8] != _SIGNATURE:
        raise MinidumpError("not a 64-bit Windows kernel dump (no PAGEDU64 header)")
    code = _u32(data, _BUGCHECK_CODE)
    p1, p2, p3, p4 = struct.unpack_from("<4Q", data, _BUGCHECK_PARAMETERS)
    if _u32(data, _DUMP_TYPE) != _TRIAGE_DUMP or len(data) < _HEADER_SIZE + 0x40:
        return Minidump(code, (p1, p2, p3, p4), triage=False)
    return Minidump(
        code,
        (p1, p2, p3, p4),
        triage=True,
        drivers=_drivers(data, _HEADER_SIZE),
        stack=_stack(data, _HEADER_SIZE),
    )


def _driver_at(drivers: Sequence[LoadedDriver], address: int) -> LoadedDriver | None:
    return next((driver for driver in drivers if driver.contains(address)), None)


def faulting_driver(dump: Minidump) -> tuple[str | None, str]:
    """The driver to blame and how it was found: ("csagent.sys", "parameter 3") or (None, why not)."""
    parameter = _FAULT_ADDRESS_PARAMETER.get(dump.code)
    if parameter is not None:
        driver = _driver_at(dump.drivers, dump.parameters[parameter - 1])
        if driver is not None:
            return driver.name, f"parameter {parameter}"
    for word in dump.stack:
        driver = _driver_at(dump.drivers, word)
        if driver is not None and driver.name.lower() not in _KERNEL_IMAGES:
            return driver.name, "first driver on the stack (heuristic)"
    return None, "no driver image contains the faulting address or a stack address"
