"""The kernel of a bzImage as an ELF QEMU can boot through its PVH entry point.

Under TCG a bzImage spends ~5 s of every boot decompressing itself (Debian's is XZ) before the
kernel prints its first line. The same kernel, decompressed once when the image is built, boots
through the PVH entry point the kernel declares (a Xen ELF note QEMU's direct kernel boot
honours) and skips that. The code that runs after the entry is the same kernel's; what differs is
that no decompressor places it, so KASLR stays off. Images where the OS is the point keep
booting their bzImage.
"""

import bz2
import gzip
import lzma
import struct

PVH_KERNEL = "vmlinux"
"""The file name of an image's kernel booted through its PVH entry (else the image has vmlinuz)."""
ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point
_SETUP_SECTS = 0x1F1
_HEADER_MAGIC = 0x202  # "HdrS"
_PAYLOAD_OFFSET = 0x248
_PAYLOAD_LENGTH = 0x24C


def pvh_vmlinux(bzimage: bytes) -> bytes | None:
    """The decompressed kernel if it is an ELF with a PVH entry; None when it cannot be (an
    unknown compression, an old header, no PVH support): then the bzImage boots as it is."""
    payload = _payload(bzimage)
    if payload is None:
        return None
    kernel = _decompress(payload)
    if kernel is None or not has_pvh_entry(kernel):
        return None
    return kernel


def _payload(bzimage: bytes) -> bytes | None:
    if len(bzimage) < _PAYLOAD_LENGTH + 4 or bzimage[_HEADER_MAGIC : _HEADER_MAGIC + 4] != b"HdrS":
        return None
    setup_sectors = bzimage[_SETUP_SECTS] or 4
    offset, length = struct.unpack_from("<II", bzimage, _PAYLOAD_OFFSET)
    start = (setup_sectors + 1) * 512 + offset
    if not length or start + length > len(bzimage):
        return None
    return bzimage[start : start + length]


def _decompress(payload: bytes) -> bytes | None:
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            # the kernel's XZ stream carries trailing padding the strict decoder rejects
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        if payload.startswith(b"\x1f\x8b"):
            return gzip.decompress(payload)
        if payload.startswith(b"BZh"):
            return bz2.decompress(payload)
        if payload.startswith(b"\x5d\x00\x00"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    except (lzma.LZMAError, OSError, EOFError, ValueError):
        return None
    return None  # zstd, lz4, lzo: not in the standard library, and not worth a dependency


def has_pvh_entry(elf: bytes) -> bool:
    """A 64-bit little-endian ELF whose notes include Xen's PHYS32_ENTRY."""
    if len(elf) < 64 or not elf.startswith(ELF_MAGIC) or elf[4] != 2 or elf[5] != 1:
        return False
    (program_headers,) = struct.unpack_from("<Q", elf, 0x20)
    entry_size, count = struct.unpack_from("<HH", elf, 0x36)
    for index in range(count):
        base = program_headers + index * entry_size
        if base + 56 > len(elf):
            return False
        kind, _, offset, _, _, size, _, _ = struct.unpack_from("<IIQQQQQQ", elf, base)
        if kind == PT_NOTE and _notes_include_pvh(elf[offset : offset + size]):
            return True
    return False


def _notes_include_pvh(notes: bytes) -> bool:
    position = 0
    while position + 12 <= len(notes):
        name_size, desc_size, kind = struct.unpack_from("<III", notes, position)
        name = notes[position + 12 : position + 12 + name_size].rstrip(b"\x00")
        if name == b"Xen" and kind == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        position += 12 + _aligned(name_size) + _aligned(desc_size)
    return False


def _aligned(size: int) -> int:
    return (size + 3) & ~3
