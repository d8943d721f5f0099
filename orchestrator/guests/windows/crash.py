"""One crash report for a Windows guest, from everything that saw the crash.

The hypervisor's view comes first (the ``GUEST_PANICKED`` payload, then libvirt's log line): it is
there even when Windows never boots again. After the testbed reboots the preserved guest, the
System log (1001, 41) and the minidump confirm the stop code and may name the faulting driver.
The report has the shape of the Linux console parser's, so titles of both families group alike:
``0x50 PAGE_FAULT_IN_NONPAGED_AREA in csagent.sys`` next to ``BUG: ... in tbs_match [testbed_sensor]``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.guests.windows.bugchecks import bugcheck_name, bugcheck_title, stop_code
from orchestrator.guests.windows.events import (
    SystemEvent,
    dump_path_from_event,
    latest_bugcheck,
    unexpected_shutdowns,
)
from orchestrator.guests.windows.minidump import Minidump, faulting_driver
from orchestrator.guests.windows.panic import (
    Bugcheck,
    BugcheckSource,
    bugcheck_from_domain_log,
    bugcheck_from_panic_info,
)


class WindowsCrashKind(StrEnum):
    """What kind of failure a Windows crash report describes."""

    BUGCHECK = "bugcheck"  # a stop code (blue or, since 2025, black screen)
    UNEXPECTED_SHUTDOWN = "unexpected_shutdown"  # the boot ended without a stop code or a clean shutdown


@dataclass(frozen=True)
class WindowsCrashReport:
    """A Windows crash, shaped like the Linux ``CrashReport`` (kind, title, function, module, fatal)."""

    kind: WindowsCrashKind
    title: str  # "0x50 PAGE_FAULT_IN_NONPAGED_AREA" (+ " in csagent.sys" when the driver is known)
    stop_code: int | None
    stop_name: str | None
    parameters: tuple[int, ...]
    module: str | None  # the faulting driver, e.g. "csagent.sys"
    source: str  # where the stop code was read (BugcheckSource)
    confirmed_by: tuple[str, ...] = ()  # other sources that reported the same stop code
    module_basis: str | None = None  # how the driver was found
    dump: str | None = None  # the dump Windows says it wrote, in the guest
    function: None = None  # Windows dumps carry no symbols here; kept for the shared shape
    fatal: bool = True
    events: tuple[SystemEvent, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "title": self.title,
            "stop_code": stop_code(self.stop_code) if self.stop_code is not None else None,
            "stop_name": self.stop_name,
            "parameters": [f"0x{value:x}" for value in self.parameters],
            "function": self.function,
            "module": self.module,
            "module_basis": self.module_basis,
            "source": self.source,
            "confirmed_by": list(self.confirmed_by),
            "dump": self.dump,
            "fatal": self.fatal,
            "events": [event.as_dict() for event in self.events],
        }


def _shutdown_report(events: Sequence[SystemEvent]) -> WindowsCrashReport | None:
    shutdowns = unexpected_shutdowns(events)
    if not shutdowns:
        return None
    ids = sorted({event.event_id for event in shutdowns})
    return WindowsCrashReport(
        kind=WindowsCrashKind.UNEXPECTED_SHUTDOWN,
        title=f"unexpected shutdown without a stop code (System event {', '.join(map(str, ids))})",
        stop_code=None,
        stop_name=None,
        parameters=(),
        module=None,
        source="system_events",
        events=tuple(shutdowns),
    )


def windows_crash_report(
    panic_info: Mapping[str, object] | None,
    domain_log: str,
    events: Sequence[SystemEvent],
    *,
    dump: Minidump | None = None,
) -> WindowsCrashReport | None:
    """The crash the evidence describes, or None when nothing crashed.

    ``panic_info`` is the GUEST_PANICKED payload (``data`` or its ``info``), ``domain_log`` the
    text of libvirt's domain log, ``events`` the System events 1001/41/6008 since the run started,
    ``dump`` the newest minidump when one was fetched.
    """
    in_log = latest_bugcheck(events)
    candidates: list[Bugcheck] = [
        found
        for found in (
            bugcheck_from_panic_info(panic_info),
            bugcheck_from_domain_log(domain_log),
            Bugcheck(dump.code, dump.parameters, BugcheckSource.MINIDUMP) if dump and dump.code else None,
            in_log[0] if in_log else None,
        )
        if found is not None
    ]
    if not candidates:
        return _shutdown_report(events)
    chosen = candidates[0]
    confirmed = tuple(str(other.source) for other in candidates[1:] if other.code == chosen.code)
    module, basis = (None, None)
    if dump is not None and dump.code == chosen.code:
        module, basis = faulting_driver(dump)
    crash_events = tuple(event for event in events if in_log and event is in_log[1])
    return WindowsCrashReport(
        kind=WindowsCrashKind.BUGCHECK,
        title=bugcheck_title(chosen.code, module),
        stop_code=chosen.code,
        stop_name=bugcheck_name(chosen.code),
        parameters=chosen.parameters,
        module=module,
        source=str(chosen.source),
        confirmed_by=confirmed,
        module_basis=basis if module else None,
        dump=dump_path_from_event(in_log[1]) if in_log and in_log[0].code == chosen.code else None,
        events=crash_events,
    )
