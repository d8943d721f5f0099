"""The kernel a fast-boot image boots through its PVH entry: taken out of the bzImage, or nothing."""

import gzip
import lzma
import struct

import pytest

from orchestrator.images.pvh_kernel import XEN_ELFNOTE_PHYS32_ENTRY, has_pvh_entry, pvh_vmlinux

pytestmark = pytest.mark.unit


def _note(name: bytes, kind: int, desc: bytes) -> bytes:
    padded_name = name + b"\x00" * (-len(name) % 4)
    padded_desc = desc + b"\x00" * (-len(desc) % 4)
    return struct.pack("<III", len(name), len(desc), kind) + padded_name + padded_desc


def elf_with_notes(notes: bytes) -> bytes:
    """A 64-bit little-endian ELF whose one program header is a PT_NOTE segment."""
    header_size, entry_size = 64, 56
    notes_offset = header_size + entry_size
    identity = b"\x7fELF" + bytes([2, 1, 1]) + b"\x00" * 9
    header = identity + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0, header_size, 0, 0, header_size, entry_size, 1, 64, 0, 0
    )
    program = struct.pack("<IIQQQQQQ", 4, 4, notes_offset, 0, 0, len(notes), len(notes), 4)
    return header + program + notes + b"kernel text"


PVH_NOTES = _note(b"Xen\x00", 6, b"linux\x00") + _note(
    b"Xen\x00", XEN_ELFNOTE_PHYS32_ENTRY, b"\x00\x10\x00\x01"
)


def bzimage(payload: bytes, setup_sectors: int = 2, offset: int = 0x30) -> bytes:
    """A bzImage's layout as the boot protocol has it: setup sectors, then the protected-mode
    part, whose payload (the compressed kernel) sits at the header's offset."""
    setup = bytearray(((setup_sectors or 4) + 1) * 512)
    setup[0x1F1] = setup_sectors
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", setup, 0x248, offset, len(payload))
    return bytes(setup) + b"\x90" * offset + payload + b"crc!"


def test_an_xz_kernel_with_a_pvh_note_comes_out_whole():
    kernel = elf_with_notes(PVH_NOTES)
    # the kernel's own XZ streams use the x86 BCJ filter and CRC32: the decoder must take them
    compressed = lzma.compress(
        kernel,
        format=lzma.FORMAT_XZ,
        check=lzma.CHECK_CRC32,
        filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2}],
    )
    assert pvh_vmlinux(bzimage(compressed)) == kernel


def test_a_gzip_kernel_too():
    kernel = elf_with_notes(PVH_NOTES)
    assert pvh_vmlinux(bzimage(gzip.compress(kernel), setup_sectors=0)) == kernel  # 0 means 4


def test_a_kernel_without_a_pvh_entry_boots_as_a_bzimage():
    kernel = elf_with_notes(_note(b"Xen\x00", 6, b"linux\x00") + _note(b"GNU\x00", 3, b"build-id"))
    assert not has_pvh_entry(kernel)
    assert pvh_vmlinux(bzimage(gzip.compress(kernel))) is None


@pytest.mark.parametrize(
    "image",
    [
        b"",
        b"MZ" + b"\x00" * 4096,  # not a Linux boot header
        bzimage(b"\x28\xb5\x2f\xfd" + b"zstd frame"),  # zstd: not in the standard library
        bzimage(b"\xfd7zXZ\x00 damaged"),
        bzimage(gzip.compress(b"not an ELF at all")),
        bzimage(gzip.compress(elf_with_notes(PVH_NOTES)))[:600],  # cut before its payload ends
    ],
    ids=["empty", "no-header", "zstd", "damaged-xz", "not-elf", "truncated"],
)
def test_anything_else_is_none_never_an_error(image):
    assert pvh_vmlinux(image) is None


def test_a_program_header_table_past_the_end_is_no_entry():
    kernel = bytearray(elf_with_notes(PVH_NOTES))
    struct.pack_into("<Q", kernel, 0x20, len(kernel) + 100)
    assert not has_pvh_entry(bytes(kernel))
