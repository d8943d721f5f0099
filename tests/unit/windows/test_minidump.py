"""Kernel minidumps: stop code from the header, the faulting driver from the triage driver list.

No public minidump is small and licensed for inclusion, so these dumps are built here, field by
field, from the documented layout (rizin's dmp_specs.h, Microsoft's triage.h): DUMP_HEADER64 with
the stop code at 0x38 and DumpType at 0xF98, TRIAGE_DUMP64 at 0x2000, DUMP_DRIVER_ENTRY64 records
of 0x90 bytes and DUMP_STRING names.
"""

import struct

import pytest

from orchestrator.guests.windows.minidump import (
    LoadedDriver,
    MinidumpError,
    faulting_driver,
    parse_minidump,
)

pytestmark = pytest.mark.unit

NT = LoadedDriver("ntoskrnl.exe", 0xFFFFF80235000000, 0x1046000)
HAL = LoadedDriver("hal.dll", 0xFFFFF80234E00000, 0x6F000)
SENSOR = LoadedDriver("csagent.sys", 0xFFFFF8023A400000, 0x2C0000)
FILTER = LoadedDriver("dlpfilter.sys", 0xFFFFF8023B000000, 0x40000)


def build_dump(
    code: int,
    parameters: tuple[int, int, int, int],
    drivers: list[LoadedDriver],
    stack: list[int],
    dump_type: int = 4,
) -> bytes:
    data = bytearray(0x2000)
    data[0:8] = b"PAGEDU64"
    struct.pack_into("<I", data, 0x38, code)
    struct.pack_into("<4Q", data, 0x40, *parameters)
    struct.pack_into("<I", data, 0xF98, dump_type)
    triage = bytearray(0x100)
    body = bytearray()
    base = 0x2000 + len(triage)
    driver_list = base
    body += bytes(0x90 * len(drivers))
    names = []
    for driver in drivers:
        names.append(base + len(body))
        encoded = driver.name.encode("utf-16-le")
        body += struct.pack("<I", len(driver.name)) + encoded + b"\0\0"
    for index, driver in enumerate(drivers):
        entry = index * 0x90
        struct.pack_into("<I", body, entry, names[index])
        struct.pack_into("<Q", body, entry + 8 + 0x30, driver.base)
        struct.pack_into("<I", body, entry + 8 + 0x40, driver.size)
    stack_offset = base + len(body)
    body += b"".join(struct.pack("<Q", word) for word in stack)
    struct.pack_into("<II", triage, 0x28, stack_offset, 8 * len(stack))
    struct.pack_into("<II", triage, 0x30, driver_list, len(drivers))
    return bytes(data + triage + body)


def test_page_fault_names_the_driver_holding_the_faulting_address():
    fault_ip = SENSOR.base + 0x35A1E  # parameter 3 of 0x50: the instruction that referenced the memory
    dump = parse_minidump(build_dump(0x50, (0xFFFF840500000000, 0, fault_ip, 2), [NT, HAL, SENSOR], []))
    assert (dump.code, dump.triage) == (0x50, True)
    assert dump.parameters[2] == fault_ip
    assert [driver.name for driver in dump.drivers] == ["ntoskrnl.exe", "hal.dll", "csagent.sys"]
    assert faulting_driver(dump) == ("csagent.sys", "parameter 3")


def test_stack_buffer_overrun_is_blamed_on_the_first_driver_on_the_stack():
    stack = [NT.base + 0x3F1A20, 0x1234, NT.base + 0x20, FILTER.base + 0x8C1, SENSOR.base + 0x100]
    dump = parse_minidump(build_dump(0xF7, (0xFFFF, 0x1, 0x2, 0), [NT, HAL, SENSOR, FILTER], stack))
    assert faulting_driver(dump) == ("dlpfilter.sys", "first driver on the stack (heuristic)")


def test_a_fault_in_the_kernel_is_the_kernels():
    dump = parse_minidump(build_dump(0xD1, (0x10, 2, 0, NT.base + 0x100), [NT, SENSOR], [SENSOR.base]))
    assert faulting_driver(dump) == ("ntoskrnl.exe", "parameter 4")


def test_no_driver_found():
    dump = parse_minidump(build_dump(0xEF, (0xFFFF, 0, 0, 0), [NT, HAL], [NT.base + 8, 0x42]))
    name, why = faulting_driver(dump)
    assert name is None
    assert "no driver" in why


def test_a_full_dump_gives_the_stop_code_only():
    dump = parse_minidump(build_dump(0x7E, (0xC0000005, SENSOR.base, 0, 0), [SENSOR], [], dump_type=1))
    assert (dump.code, dump.triage, dump.drivers) == (0x7E, False, ())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"MDMP" + bytes(0x3000), "PAGEDU64"),
        (b"PAGEDU64", "PAGEDU64"),
    ],
)
def test_refuses_what_is_not_a_kernel_dump(data, message):
    with pytest.raises(MinidumpError, match=message):
        parse_minidump(data)


def test_refuses_a_driver_list_that_runs_past_the_file():
    data = bytearray(build_dump(0x50, (0, 0, 0, 0), [SENSOR], []))
    struct.pack_into("<I", data, 0x2000 + 0x34, 5000)  # DriverCount
    with pytest.raises(MinidumpError, match="driver list"):
        parse_minidump(bytes(data))
