"""The validating sensor's content checks, compiled for user space and run on every content variant.

module/content.c is built with the host's C compiler against a few lines of stand-in kernel
headers (little-endian, calloc for kcalloc), next to a driver that reads a file and prints the
validator's verdict -- then, for accepted files, what the parser made of them. Only the
validator and the parser of validated files run here: the trusting parser on bad content reads
out of bounds by design and belongs in a guest.
"""

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_samples_sensor import SAMPLE, content

pytestmark = pytest.mark.unit

MODULE = SAMPLE / "module"

SHIM_HEADERS = {
    "types.h": """
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef unsigned long long u64;
typedef uint16_t __le16; typedef uint32_t __le32; typedef unsigned long long __le64;
#define __packed __attribute__((packed))
#define noinline __attribute__((noinline))
""",
    "build_bug.h": "#include <assert.h>\n",
    "err.h": """
#define MAX_ERRNO 4095
#define IS_ERR(p) ((unsigned long)(p) >= (unsigned long)-MAX_ERRNO)
#define PTR_ERR(p) ((long)(p))
#define ERR_PTR(e) ((void *)(long)(e))
""",
    "kernel.h": """
#include <stdio.h>
#include <errno.h>
#define le16_to_cpu(x) (x)
#define le32_to_cpu(x) (x)
#define le64_to_cpu(x) (x)
#define max(a, b) ((a) > (b) ? (a) : (b))
#define scnprintf(buf, len, ...) snprintf(buf, len, __VA_ARGS__)
""",
    "printk.h": "#define pr_err(...) fprintf(stderr, __VA_ARGS__)\n",
    "slab.h": """
#include <stdlib.h>
#define GFP_KERNEL 0
#define ZERO_SIZE_PTR ((void *)16)
#define ZERO_OR_NULL_PTR(p) ((unsigned long)(p) <= 16)
static inline void *kcalloc(size_t n, size_t size, int flags) { return n ? calloc(n, size) : ZERO_SIZE_PTR; }
static inline void kfree(const void *p) { if (!ZERO_OR_NULL_PTR(p)) free((void *)p); }
""",
    "string.h": "#include <string.h>\n",
}

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "tbs.h"

int main(int argc, char **argv)
{
	static char why[160];
	struct tbs_content c = {0};
	FILE *f = fopen(argv[1], "rb");
	unsigned char *data = malloc(1 << 23);
	size_t size = fread(data, 1, 1 << 23, f);

	if (tbs_validate_content(data, size, why, sizeof(why))) {
		printf("rejected: %s\n", why);
		return 0;
	}
	if (tbs_parse_content(&c, data, size))
		return 2;
	printf("accepted: %u rules, %u exec\n", c.nrules, c.nexec);
	return 0;
}
"""


def compile_validator(out: Path, feature_level: int) -> Path:
    shim = out / "shim" / "linux"
    shim.mkdir(parents=True)
    for name, text in SHIM_HEADERS.items():
        (shim / name).write_text(text)
    (out / "driver.c").write_text(DRIVER)
    binary = out / f"validate-{feature_level}"
    subprocess.run(
        [
            "cc",
            "-std=gnu11",
            "-Wall",
            "-Wno-format",
            "-I",
            str(out / "shim"),
            "-I",
            str(MODULE),
            "-DTBS_VALIDATE=1",
            f"-DTBS_FEATURE_LEVEL={feature_level}",
            '-DTBS_VERSION="test"',
            '-DKBUILD_MODNAME="testbed_sensor"',
            "-o",
            str(binary),
            str(out / "driver.c"),
            str(MODULE / "content.c"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return binary


@pytest.fixture(scope="module")
def validators(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("validator")
    return {level: compile_validator(out / str(level), level) for level in (1, 2)}


def verdict(binary: Path, data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "channel.bin"
    path.write_bytes(data)
    result = subprocess.run([str(binary), str(path)], capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.strip()


GOOD = content.build_content("good")


def patched(offset: int, delta: int) -> bytes:
    data = bytearray(GOOD)
    struct.pack_into("<I", data, offset, (struct.unpack_from("<I", data, offset)[0] + delta) & 0xFFFFFFFF)
    return bytes(data)


def flipped(count: int) -> bytes:
    return bytes(b ^ 1 if i < count else b for i, b in enumerate(GOOD))


VARIANTS = {
    "empty": (b"", "file is 0 bytes, shorter than the 64-byte header"),
    "zero-filled": (bytes(len(GOOD)), "bad magic"),
    "header only": (GOOD[:64], "fields at 64..224 lie outside the file's 64..64"),
    "half": (GOOD[: len(GOOD) // 2], "rules at 224..816 lie outside the file's 64..408"),
    "length-1": (GOOD[:-1], "rules at 224..816 lie outside the file's 64..815"),
    "bit flips in the magic": (flipped(4), "bad magic"),
    "bit flip in the format version": (GOOD[:4] + bytes([GOOD[4] ^ 2]) + GOOD[5:], "format version 3"),
    "trailing junk": (GOOD + b"\xa5" * 16, "file is 832 bytes, its sections end at 816"),
    "oversized": (GOOD + bytes(4 << 20), "its sections end at 816"),
    "field_count+1": (patched(16, 1), "field_count 21, the template has 20 fields"),
    "field_count-1": (patched(16, -1), "field_count 19, the template has 20 fields"),
    "rule_count+1": (patched(24, 1), "rule 12 of 13 starts at offset 816, past the end of the rules (816)"),
    "rule_count-1": (patched(24, -1), "11 rules take 520 bytes, the header says rules_size 592"),
    "rules_size+1": (patched(32, 1), "rules at 224..817 lie outside the file's 64..816"),
    "rules_size-1": (patched(32, -1), "rule 11: 4 criteria run past the end of the rules (815)"),
    "activity-malformed": (
        content.build_content("activity-malformed"),
        "rule 12 criterion 1: exec input 3, the sensor supplies 3",
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_validating_sensor_rejects_every_variant_with_a_reason(validators, tmp_path, variant):
    data, reason = VARIANTS[variant]

    result = verdict(validators[2], data, tmp_path)

    assert result.startswith("rejected: ")
    assert reason in result


@pytest.mark.parametrize(
    ("kind", "summary"),
    [("good", "12 rules, 0 exec"), ("new", "12 rules, 0 exec"), ("activity", "13 rules, 1 exec")],
)
def test_the_validating_sensor_accepts_well_formed_content(validators, tmp_path, kind, summary):
    assert verdict(validators[2], content.build_content(kind), tmp_path) == f"accepted: {summary}"


def test_a_validating_1_0_sensor_rejects_compound_rules_instead_of_overrunning(validators, tmp_path):
    assert verdict(validators[1], content.build_content("good"), tmp_path) == "accepted: 12 rules, 0 exec"
    assert verdict(validators[1], content.build_content("new"), tmp_path) == (
        "rejected: content needs features 0x1 this sensor (test) does not have"
    )
