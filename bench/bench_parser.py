"""`make bench`: the crash parser on a 100 MB console, with a real report near its end.

A guest can flood its serial console; the parser must stay linear and bounded. The console is mostly
noise as consoles have it (kernel and systemd lines with timestamps, user-space lines without, a
sensor's own chatter with "BUG count", harness lines with "INFO:" and "WARNING:"), then an oops of
the sample sensor and its panic. The parse must find that report, title it right, and take less
than GOAL_S seconds.

With ``--corpus DIR`` it also scores the parser against a corpus in the format of syzkaller's
pkg/report/testdata/linux/report (a "TITLE: ..." header, a blank line, the console): how often a
report is found where one exists, how often the guilty function is the one syzkaller's title names,
and that consoles without a report give none.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.core.crash.frames import canonical_name
from orchestrator.core.crash_report import find_reports, parse_console_file

GOAL_S = 5.0
EXPECTED_TITLE = "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"

_NOISE = (
    "[{t:12.6f}] systemd[1]: Started session-{n}.scope - Session {n} of User root.",
    "[{t:12.6f}] audit: type=1130 audit({s}.{m:03d}:{n}): pid=1 uid=0 auid=4294967295 ses=4294967295 "
    "msg='unit=systemd-tmpfiles-clean comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" res=success'",
    "[{t:12.6f}] testbed_sensor: channel 291 scanned: {n} templates, 0 matches (BUG count 0)",
    "[{t:12.6f}] virtio_net virtio0 eth0: rx queue {m}: {n} packets, 0 drops",
    "[{t:12.6f}] pvpanic-mmio pvpanic-mmio.0: pvpanic device found",
    "harness: INFO: step {n} passed in {m} ms",
    "harness: WARNING: step {n} took {m} ms, longer than expected",
    "Starting Cleanup of Temporary Directories... page fault counter {n}",
    "[  OK  ] Finished systemd-tmpfiles-clean.service - Cleanup of Temporary Directories.",
)

_REPORT = """\
[{t0:12.6f}] BUG: kernel NULL pointer dereference, address: 0000000000000010
[{t0:12.6f}] #PF: supervisor read access in kernel mode
[{t0:12.6f}] #PF: error_code(0x0000) - not-present page
[{t0:12.6f}] PGD 0 P4D 0
[{t0:12.6f}] Oops: 0000 [#1] PREEMPT SMP NOPTI
[{t0:12.6f}] CPU: 0 PID: 301 Comm: modprobe Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[{t0:12.6f}] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[{t0:12.6f}] RIP: 0010:tbs_match_template+0x43/0x140 [testbed_sensor]
[{t0:12.6f}] RSP: 0018:ffffcc22c0817ad0 EFLAGS: 00000246
[{t0:12.6f}] Call Trace:
[{t0:12.6f}]  <TASK>
[{t0:12.6f}]  tbs_init+0x49f/0x1000 [testbed_sensor]
[{t0:12.6f}]  ? 0xffffffffc04c0000
[{t0:12.6f}]  do_one_initcall+0x59/0x220
[{t0:12.6f}]  do_init_module+0x4a/0x1f0
[{t0:12.6f}]  __do_sys_finit_module+0xac/0x120
[{t0:12.6f}]  do_syscall_64+0x5d/0xb0
[{t0:12.6f}]  entry_SYSCALL_64_after_hwframe+0x6e/0xd8
[{t0:12.6f}]  </TASK>
[{t0:12.6f}] Modules linked in: testbed_sensor(OE+) loop fuse dm_mod configfs qemu_fw_cfg pvpanic_mmio pvpanic
[{t0:12.6f}] CR2: 0000000000000010
[{t0:12.6f}] ---[ end trace 0000000000000000 ]---
[{t0:12.6f}] RIP: 0010:tbs_match_template+0x43/0x140 [testbed_sensor]
[{t1:12.6f}] Kernel panic - not syncing: Fatal exception
[{t1:12.6f}] Kernel Offset: 0x1000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-...)
[{t1:12.6f}] ---[ end Kernel panic - not syncing: Fatal exception ]---
"""


def write_console(path: Path, size_bytes: int) -> None:
    """Noise up to ``size_bytes``, then the report and a little more noise."""
    with path.open("w", encoding="utf-8") as out:
        written, n, seconds = 0, 0, 1.0
        while written < size_bytes:
            lines = []
            for _ in range(2000):
                template = _NOISE[n % len(_NOISE)]
                lines.append(template.format(t=seconds, n=n, m=n % 997, s=int(seconds) + 1_700_000_000))
                n += 1
                seconds += 0.0007
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            written += len(chunk)
        out.write(_REPORT.format(t0=seconds + 1.0, t1=seconds + 1.001))
        for _ in range(50):
            out.write("testbed-guest login: \n")


def score_corpus(corpus: Path) -> None:
    """Detection, guilty-function agreement and false positives on a syzkaller-format corpus."""
    found = expected = same_function = compared = false_positives = clean = 0
    for case in sorted(path for path in corpus.iterdir() if path.is_file()):
        header, _, log = case.read_bytes().replace(b"\r", b"").partition(b"\n\n")
        lines = header.decode(errors="replace").splitlines()
        fields = dict(line.split(": ", 1) for line in lines if ": " in line)
        reports = find_reports(log.split(b"\nREPORT:\n")[0].decode(errors="replace"))
        title = fields.get("TITLE", "")
        if not title:
            clean += 1
            false_positives += bool(reports)
            continue
        expected += 1
        found += bool(reports)
        damaged = fields.get("CORRUPTED") == "Y" or title.endswith(" in corrupted")
        if reports and " in " in title and not damaged:
            compared += 1
            named = canonical_name(title.rsplit(" in ", 1)[1].split("/")[0].strip())
            same_function += reports[0].function == named
    print(
        f"bench_parser: corpus {corpus}: report found in {found}/{expected}, guilty function as syzkaller's "
        f"title in {same_function}/{compared}, reports in clean consoles {false_positives}/{clean}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--corpus", type=Path, help="also score a syzkaller-format corpus directory")
    arguments = parser.parse_args()
    if arguments.corpus:
        score_corpus(arguments.corpus)
    with tempfile.TemporaryDirectory(prefix="bench-parser-") as scratch:
        console = Path(scratch) / "console.log"
        write_console(console, arguments.size_mb * 1024 * 1024)
        size = console.stat().st_size
        started = time.perf_counter()
        report = parse_console_file(console, max_bytes=size)
        elapsed = time.perf_counter() - started
    print(f"bench_parser: {size / 1e6:.0f} MB console parsed in {elapsed:.2f} s (goal < {GOAL_S:g} s)")
    if report is None or report.title != EXPECTED_TITLE:
        got = report.title if report else None
        print(f"bench_parser: wrong result: {got!r}, expected {EXPECTED_TITLE!r}")
        return 1
    return 0 if elapsed < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
