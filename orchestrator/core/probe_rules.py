"""What a health probe found, and what it means: reached is not healthy.

After every boot's stability window (and at the end of the soak window) the guest is asked
again: does the agent answer from the same boot, does sshd answer, are the panic sysctls still
on, is the kernel newly tainted, did the console print a report, does the candidate's own health
check pass? ``judge_probe`` turns those facts into one of: healthy, hung (the guest went silent:
the testbed will force a crash dump with an NMI), or failed with an outcome and a reason.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.core.outcomes import CellOutcome

REQUIRED_SYSCTLS: Mapping[str, str] = {
    "kernel.panic_on_oops": "1",  # an oops must become a panic the hypervisor hears of
    "kernel.softlockup_panic": "1",  # a soft lockup must become a titled panic, not a silent hang
    "kernel.hung_task_panic": "1",  # likewise a task blocked for minutes
    "kernel.panic_on_rcu_stall": "1",  # likewise an RCU stall
    "kernel.unknown_nmi_panic": "1",  # the NMI the testbed injects into a silent guest must panic it
    "kernel.panic": "0",  # never reboot on panic: the crashed guest is evidence, a loop stays countable
}
"""What every Linux guest must keep set while the candidate runs; a candidate that turns them off
would hide its own crashes."""

BAD_TAINT_FLAGS: Mapping[str, int] = {
    "F": 1 << 1,  # a module was force-loaded
    "R": 1 << 3,  # a module was force-unloaded
    "M": 1 << 4,  # a machine check exception happened
    "B": 1 << 5,  # bad page referenced or unexpected page flags
    "U": 1 << 6,  # user space asked for the taint
    "D": 1 << 7,  # the kernel died (oops or BUG)
    "W": 1 << 9,  # a warning was printed
    "L": 1 << 15,  # a soft lockup happened
}
"""Taint flags that mean the kernel is in trouble. Out-of-tree (O), unsigned (E) or proprietary (P)
modules taint the kernel too, and every third-party sensor does that: those are no failure."""

_TAINT_MEANING = {
    "F": "a module was force-loaded",
    "R": "a module was force-unloaded",
    "M": "a machine check happened",
    "B": "bad page state",
    "U": "user space tainted the kernel",
    "D": "the kernel oopsed",
    "W": "a kernel warning was printed",
    "L": "a soft lockup happened",
}


@dataclass(frozen=True)
class ConsoleFinding:
    """A kernel report the console showed (see ``crash_report.find_reports``)."""

    title: str
    fatal: bool  # BUG/Oops/lockup/...: the kernel is broken; False for WARNING-class reports
    boot: int = 0
    module: str | None = None


@dataclass(frozen=True)
class ProbeReport:
    """The facts one health probe gathered; plain data an adapter fills in."""

    agent_ok: bool  # the guest agent answered
    boot_mark: str | None = None  # the boot id the guest reports
    ssh_ok: bool = False  # sshd answered and a command ran over SSH
    ssh_detail: str = ""
    sysctls: Mapping[str, str] = field(default_factory=dict)
    tainted: int | None = None  # /proc/sys/kernel/tainted
    health_rc: int | None = None  # exit status of the candidate's health check; None when not run
    health_output: str = ""
    findings: tuple[ConsoleFinding, ...] = ()  # every report in the console so far
    detail: str = ""  # what went wrong gathering the facts, for people
    # What ``sysctls`` must hold; a family without panic sysctls (Windows: its crash settings are
    # baked into the image) reports an empty mapping, and nothing is required of it.
    required_sysctls: Mapping[str, str] = field(default_factory=lambda: REQUIRED_SYSCTLS, repr=False)


class Verdict(StrEnum):
    """What a probe means."""

    HEALTHY = "healthy"
    SILENT = "silent"  # nothing answers: a hang (to be turned into a crash dump)
    FAILED = "failed"


@dataclass(frozen=True)
class ProbeJudgement:
    """The answer to one probe, and what the machine should remember for the next one."""

    verdict: Verdict
    outcome: CellOutcome | None = None
    reason: str = ""
    known_titles: frozenset[str] = frozenset()
    baseline_taint: int | None = None


def taint_letters(mask: int) -> str:
    return "".join(letter for letter, bit in BAD_TAINT_FLAGS.items() if mask & bit)


def _sysctl_problems(sysctls: Mapping[str, str], required: Mapping[str, str]) -> list[str]:
    problems = []
    for name, wanted in required.items():
        value = sysctls.get(name)
        if value is None:
            problems.append(f"{name} could not be read")
        elif value.strip() != wanted:
            problems.append(f"{name} is {value.strip()} (the testbed needs {wanted})")
    return problems


def judge_probe(
    report: ProbeReport,
    *,
    expected_mark: str | None,
    baseline: bool,
    known_titles: frozenset[str],
    baseline_taint: int | None,
) -> ProbeJudgement:
    """Healthy, silent or failed, in the order a person would look.

    ``baseline``: nothing of the candidate is in the guest yet. Then WARNING-class reports and
    taint are the image's own and become the reference; everything else still fails (the
    caller blames it on the infrastructure, not the candidate).
    """
    fatal = [f for f in report.findings if f.fatal and f.title not in known_titles]
    warnings = [f for f in report.findings if not f.fatal and f.title not in known_titles]
    seen = known_titles | {f.title for f in report.findings}

    def failed(outcome: CellOutcome, reason: str) -> ProbeJudgement:
        return ProbeJudgement(Verdict.FAILED, outcome, reason, seen, baseline_taint)

    if fatal:
        return failed(CellOutcome.CRASHED, f"the console shows {fatal[0].title}")
    if not report.agent_ok:
        reason = "the guest stopped answering (agent silent, no crash reported)"
        return ProbeJudgement(
            Verdict.SILENT, CellOutcome.HUNG, _with(reason, report.detail), seen, baseline_taint
        )
    if expected_mark is not None and report.boot_mark != expected_mark:
        return failed(
            CellOutcome.CRASHED,
            f"the guest rebooted on its own (boot id {expected_mark[:8]} became {str(report.boot_mark)[:8]})",
        )
    if not report.ssh_ok:
        return failed(
            CellOutcome.DEGRADED,
            _with(
                "sshd does not answer while the guest agent does: the guest's network is cut",
                report.ssh_detail,
            ),
        )
    if problems := _sysctl_problems(report.sysctls, report.required_sysctls):
        return failed(CellOutcome.DEGRADED, "crashes would go unreported: " + "; ".join(problems))
    if baseline:
        return ProbeJudgement(Verdict.HEALTHY, known_titles=seen, baseline_taint=report.tainted)
    if warnings:
        return failed(CellOutcome.DEGRADED, f"the console shows {warnings[0].title}")
    new_taint = _new_bad_taint(report.tainted, baseline_taint)
    if new_taint:
        meaning = ", ".join(f"{letter} ({_TAINT_MEANING[letter]})" for letter in new_taint)
        return failed(CellOutcome.DEGRADED, f"the kernel is newly tainted: {meaning}")
    if report.health_rc not in (None, 0):
        output = report.health_output.strip().splitlines()
        return failed(
            CellOutcome.DEGRADED,
            f"the candidate's health check failed (exit {report.health_rc})"
            + (f": {output[-1][:300]}" if output else ""),
        )
    return ProbeJudgement(Verdict.HEALTHY, known_titles=seen, baseline_taint=baseline_taint)


def _new_bad_taint(tainted: int | None, baseline: int | None) -> str:
    if tainted is None:
        return ""
    return taint_letters(tainted & ~(baseline or 0))


def _with(reason: str, detail: str) -> str:
    return f"{reason} ({detail})" if detail else reason
