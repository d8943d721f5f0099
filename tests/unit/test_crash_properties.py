"""Properties: the same bug gives the same title whatever its addresses, offsets, PIDs, CPUs and times;
and no console, however hostile, breaks the parser or puts unsafe characters in its output."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.crash_report import find_reports, parse_console

pytestmark = pytest.mark.unit

# Each template is one report; every {field} is something that differs from one cell to the next.
TEMPLATES = {
    "x86-oops": """\
{ts0} BUG: kernel NULL pointer dereference, address: {addr}
{ts0} #PF: supervisor read access in kernel mode
{ts1} Oops: 0000 [#1] PREEMPT SMP NOPTI
{ts1} CPU: {cpu} PID: {pid} Comm: modprobe Tainted: G           OE      6.1.0-56-amd64 #1
{ts1} RIP: 0010:tbs_match_template+{off} [testbed_sensor]
{ts1} RSP: 0018:{addr} EFLAGS: 00010246
{ts2} Call Trace:
{ts2}  <TASK>
{ts2}  tbs_init+{off} [testbed_sensor]
{ts2}  ? 0x{addr}
{ts2}  do_one_initcall+{off}
{ts2}  </TASK>
{ts2} ---[ end trace {addr} ]---
{ts3} Kernel panic - not syncing: Fatal exception
""",
    "x86-3.10-oops": """\
{ts0} BUG: unable to handle kernel NULL pointer dereference at {addr}
{ts0} IP: [<{addr}>] tbs_match_template+{off} [testbed_sensor]
{ts1} Oops: 0000 [#1] SMP
{ts1} CPU: {cpu} PID: {pid} Comm: modprobe Tainted: G           OE  ------------   3.10.0-1160.el7.x86_64 #1
{ts1} RIP: 0010:[<{addr}>]  [<{addr}>] tbs_match_template+{off} [testbed_sensor]
{ts2} Call Trace:
{ts2}  [<{addr}>] tbs_init+{off} [testbed_sensor]
{ts2}  [<{addr}>] ? tbs_exit+{off} [testbed_sensor]
{ts2}  [<{addr}>] do_one_initcall+{off}
""",
    "arm64-oops": """\
{ts0} Unable to handle kernel paging request at virtual address {addr}
{ts0} Internal error: Oops: {addr} [#1] PREEMPT SMP
{ts1} CPU: {cpu} PID: {pid} Comm: kworker/{cpu}:1 Tainted: G           OE      6.1.0-56-arm64 #1
{ts1} pc : tbf_fill_table+{off} [testbed_faults]
{ts1} lr : tbf_fire+{off} [testbed_faults]
{ts2} Call trace:
{ts2}  tbf_fill_table+{off} [testbed_faults]
{ts2}  tbf_fire+{off} [testbed_faults]
{ts2}  process_one_work+{off}
""",
    "warning": """\
{ts0} ------------[ cut here ]------------
{ts0} WARNING: CPU: {cpu} PID: {pid} at /build/tbs/channel.c:{line} tbs_reload+{off} [testbed_sensor]
{ts1} CPU: {cpu} PID: {pid} Comm: tbs-reload Tainted: G           OE      6.1.0-56-amd64 #1
{ts1} RIP: 0010:tbs_reload+{off} [testbed_sensor]
{ts2} Call Trace:
{ts2}  tbs_reload_write+{off} [testbed_sensor]
{ts2}  vfs_write+{off}
{ts2} ---[ end trace {addr} ]---
""",
    "soft-lockup": """\
{ts0} watchdog: BUG: soft lockup - CPU#{cpu} stuck for {seconds}s! [tbs-scan:{pid}]
{ts0} CPU: {cpu} PID: {pid} Comm: tbs-scan Tainted: G           OEL     6.1.0-56-amd64 #1
{ts1} RIP: 0010:tbs_spin_on_template+{off} [testbed_sensor]
{ts1} Call Trace:
{ts1}  <TASK>
{ts1}  tbs_scan_thread+{off} [testbed_sensor]
{ts1}  kthread+{off}
{ts1}  </TASK>
{ts2} Kernel panic - not syncing: softlockup: hung tasks
""",
    "kasan": """\
{ts0} BUG: KASAN: use-after-free in tbs_copy_name+{off} [testbed_sensor]
{ts0} Read of size {size} at addr {addr} by task modprobe/{pid}
{ts0} CPU: {cpu} PID: {pid} Comm: modprobe Tainted: G    B      OE      6.1.0-56-amd64 #1
{ts1} Call Trace:
{ts1}  dump_stack_lvl+{off}
{ts1}  kasan_report+{off}
{ts1}  tbs_copy_name+{off} [testbed_sensor]
{ts1} Allocated by task {pid}:
{ts1}  tbs_alloc_table+{off} [testbed_sensor]
""",
    "hung-task": """\
{ts0} INFO: task tbs-scan:{pid} blocked for more than {seconds} seconds.
{ts0}       Tainted: G           OE      6.1.0-56-amd64 #1
{ts0} task:tbs-scan        state:D stack:0     pid:{pid}   ppid:2      flags:0x{size}
{ts1} Call Trace:
{ts1}  __schedule+{off}
{ts1}  schedule+{off}
{ts1}  tbs_wait_channel+{off} [testbed_sensor]
{ts1}  tbs_scan_thread+{off} [testbed_sensor]
""",
    "spinlock": """\
{ts0} BUG: spinlock bad magic on CPU#{cpu}, tbs-scan/{pid}
{ts0}  lock: 0x{addr}, .magic: {addr}, .owner: tbs-scan/{pid}, .owner_cpu: {cpu}
{ts1} CPU: {cpu} PID: {pid} Comm: tbs-scan Tainted: G           OE      6.1.0-56-amd64 #1
{ts1} Call Trace:
{ts1}  do_raw_spin_lock+{off}
{ts1}  tbs_lock_table+{off} [testbed_sensor]
""",
    "sleeping-in-atomic": """\
{ts0} BUG: sleeping function called from invalid context at kernel/locking/mutex.c:{line}
{ts0} in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: {pid}, name: tbs-scan
{ts1} CPU: {cpu} PID: {pid} Comm: tbs-scan Tainted: G           OE      6.1.0-56-amd64 #1
{ts1} Call Trace:
{ts1}  __might_resched+{off}
{ts1}  mutex_lock+{off}
{ts1}  tbs_lookup+{off} [testbed_sensor]
""",
    "panic-reason-with-numbers": """\
{ts0} Kernel panic - not syncing: Attempted to kill init! exitcode=0x{size}
{ts0} CPU: {cpu} PID: 1 Comm: init Not tainted 6.1.0-56-amd64 #1
{ts1} Call Trace:
{ts1}  panic+{off}
{ts1}  do_exit+{off}
""",
}


@dataclass(frozen=True)
class Variables:
    """Everything that differs between two cells hitting the same bug."""

    start: float
    steps: tuple[float, float, float]
    addresses: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    pid: int
    cpu: int
    seconds: int
    line: int
    size: int
    caller_ids: bool

    def fill(self, template: str) -> str:
        times = [self.start]
        for step in self.steps:
            times.append(times[-1] + step)
        addresses, offsets = iter(self.addresses * 40), iter(self.offsets * 40)
        out = []
        for raw in template.splitlines():
            line = raw
            for index, seconds in enumerate(times):
                caller = f"[ T{self.pid}]" if self.caller_ids else ""
                line = line.replace(f"{{ts{index}}}", f"[{seconds:12.6f}]{caller}")
            while "{addr}" in line:
                line = line.replace("{addr}", f"{next(addresses):016x}", 1)
            while "{off}" in line:
                offset, length = next(offsets)
                line = line.replace("{off}", f"0x{offset:x}/0x{offset + length:x}", 1)
            out.append(
                line.format(pid=self.pid, cpu=self.cpu, seconds=self.seconds, line=self.line, size=self.size)
            )
        return "\n".join(out) + "\n"


variables = st.builds(
    Variables,
    start=st.floats(min_value=0.5, max_value=99_999.0, allow_nan=False),
    steps=st.tuples(*[st.floats(min_value=0.0, max_value=2.0, allow_nan=False)] * 3),
    addresses=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=5).map(tuple),
    offsets=st.lists(st.tuples(st.integers(0, 0xFFF), st.integers(1, 0x3FFF)), min_size=1, max_size=5).map(
        tuple
    ),
    pid=st.integers(1, 4_194_304),
    cpu=st.integers(0, 511),
    seconds=st.integers(10, 100_000),
    line=st.integers(1, 99_999),
    size=st.integers(1, 0xFFFFFFFF),
    caller_ids=st.booleans(),
)
REFERENCE = Variables(
    100.0, (0.001, 0.001, 0.001), (0xFFFF888003F2A1C8,), ((0x43, 0xFD),), 301, 0, 26, 142, 8, caller_ids=False
)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=variables)
def test_titles_do_not_change_with_addresses_offsets_pids_cpus_or_timestamps(name, values):
    template = TEMPLATES[name]
    reference = parse_console(REFERENCE.fill(template))
    assert reference is not None
    assert not reference.corrupted, reference.corrupted_reason
    assert not re.search(r"0x|[0-9a-f]{8}|\d{3}", reference.title)  # nothing that looks variable

    report = parse_console(values.fill(template))

    assert report is not None
    assert (report.title, report.kind, report.function, report.module) == (
        reference.title,
        reference.kind,
        reference.function,
        reference.module,
    )


# -- hostile consoles ---------------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
_FIXTURE_LINES = [
    line
    for path in sorted((Path(__file__).resolve().parents[1] / "fixtures/console/formats").glob("*.log"))
    for line in path.read_text(errors="replace").splitlines()
]
console_lines = st.one_of(
    st.sampled_from(_FIXTURE_LINES),
    st.text(max_size=300),
    st.text(alphabet="\x1b[]0123456789;m\x07\x00\r\t\x9b\u202e\u2066\ud800?<>#:. BUGWARNING", max_size=120),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(console_lines, max_size=80), newline=st.sampled_from(["\n", "\r\n", "\r\r\n"]))
def test_any_console_parses_and_what_comes_out_is_safe(lines, newline):
    text = newline.join(lines)

    reports = find_reports(text)
    last = parse_console(text)

    for report in [*reports, *([last] if last else [])]:
        for value in (report.title, report.first_line, *report.excerpt, *report.others):
            assert not _UNSAFE.search(value)
        assert report.boot >= 0
    if last is not None:
        assert last.title in {r.title for r in reports}
