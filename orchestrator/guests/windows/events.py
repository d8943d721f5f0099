"""System event log records that tell of a crash, read from the XML Windows renders them as.

After a guest comes back from a crash, three records in the System log describe it:

- 1001, provider Microsoft-Windows-WER-SystemErrorReporting (source "BugCheck"): "The computer has
  rebooted from a bugcheck. The bugcheck was: {param1}. A dump was saved in: {param2}. Report Id:
  {param3}." -- param1 reads ``0x00000050 (0xffff..., 0x0, 0xfffff802..., 0x0)``;
- 41, provider Microsoft-Windows-Kernel-Power: the previous boot ended without a clean shutdown;
  ``BugcheckCode`` is the stop code in DECIMAL (80 is 0x50), ``BugcheckParameter1..4`` in hex, and
  0 when there was no bugcheck at all (power cut, reset);
- 6008, provider EventLog: "The previous system shutdown at {time} on {date} was unexpected."

The guest renders them with ``Get-WinEvent ... | ForEach-Object { $_.ToXml() }``; the channel
wraps them in one ``<Events>`` element. The parser is pure and accepts one event or many.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree import ElementTree

from orchestrator.guests.windows.panic import Bugcheck, BugcheckSource

EVENT_NAMESPACE = "http://schemas.microsoft.com/win/2004/08/events/event"
BUGCHECK_EVENT = 1001
KERNEL_POWER_EVENT = 41
UNEXPECTED_SHUTDOWN_EVENT = 6008
CRASH_EVENT_IDS = (BUGCHECK_EVENT, KERNEL_POWER_EVENT, UNEXPECTED_SHUTDOWN_EVENT)

_NS = f"{{{EVENT_NAMESPACE}}}"
_SAME_CRASH_SECONDS = 900
_EPOCH = datetime.min.replace(tzinfo=UTC)
_MAX_XML_BYTES = 4 * 2**20  # a few hundred events at most; more is not a System log we asked for
_PARAM1 = re.compile(
    r"^\s*(?P<code>0x[0-9a-fA-F]+)\s*\((?P<parameters>[^)]*)\)"  # 0x00000050 (0x..., 0x..., 0x..., 0x...)
)


class EventXmlError(ValueError):
    """The guest's event log output is not the XML Windows writes."""


@dataclass(frozen=True)
class SystemEvent:
    """One System log record, as far as crash detection needs it."""

    event_id: int
    provider: str
    time_created: datetime | None
    record_id: int | None = None
    computer: str = ""
    data: Mapping[str, str] = field(default_factory=dict)  # named <Data>; unnamed ones as Data0, Data1, ...

    def as_dict(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "provider": self.provider,
            "time_created": self.time_created.isoformat() if self.time_created else None,
            "record_id": self.record_id,
            "computer": self.computer,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "SystemEvent":
        """Read back what ``as_dict`` wrote (the cell's system-events.json)."""
        created = data.get("time_created")
        record = data.get("record_id")
        values = data.get("data")
        return cls(
            event_id=int(str(data["event_id"])),
            provider=str(data.get("provider", "")),
            time_created=datetime.fromisoformat(created) if isinstance(created, str) else None,
            record_id=record if isinstance(record, int) else None,
            computer=str(data.get("computer", "")),
            data={str(k): str(v) for k, v in values.items()} if isinstance(values, Mapping) else {},
        )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((child for child in element if _local(child.tag) == name), None)


def _text(element: ElementTree.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _timestamp(value: str | None) -> datetime | None:
    """SystemTime as Windows writes it: 2019-10-15T01:14:02.498048100Z (seven or nine digits)."""
    if not value:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?", value.strip())
    if not match:
        return None
    moment = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    return moment.replace(microsecond=int(fraction))


def _data(event: ElementTree.Element) -> dict[str, str]:
    values: dict[str, str] = {}
    container = _child(event, "EventData") or _child(event, "UserData")
    if container is None:
        return values
    unnamed = 0
    for element in container.iter():
        if _local(element.tag) not in ("Data", "Binary"):
            continue
        name = element.get("Name")
        if name is None:
            name = f"Data{unnamed}" if _local(element.tag) == "Data" else "Binary"
            unnamed += _local(element.tag) == "Data"
        values[name] = _text(element)
    return values


def _event(element: ElementTree.Element) -> SystemEvent | None:
    system = _child(element, "System")
    if system is None:
        return None
    try:
        event_id = int(_text(_child(system, "EventID")))
    except ValueError:
        return None
    provider = _child(system, "Provider")
    created = _child(system, "TimeCreated")
    record = _text(_child(system, "EventRecordID"))
    return SystemEvent(
        event_id=event_id,
        provider=(provider.get("Name") or "") if provider is not None else "",
        time_created=_timestamp(created.get("SystemTime") if created is not None else None),
        record_id=int(record) if record.isdigit() else None,
        computer=_text(_child(system, "Computer")),
        data=_data(element),
    )


def parse_events(xml_text: str) -> tuple[SystemEvent, ...]:
    """Every ``<Event>`` in the text (one, or several under any wrapper), oldest first."""
    if not xml_text.strip():
        return ()
    if len(xml_text) > _MAX_XML_BYTES:
        raise EventXmlError(f"event log output of {len(xml_text)} characters is too large")
    if "<!DOCTYPE" in xml_text or "<!ENTITY" in xml_text:
        raise EventXmlError("event log output carries a DTD; Windows never writes one")
    try:
        # Entities and DTDs are refused above; expat fetches nothing external.
        root = ElementTree.fromstring(xml_text)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise EventXmlError(f"event log output is not well-formed XML: {exc}") from exc
    elements = [root] if _local(root.tag) == "Event" else [e for e in root.iter() if _local(e.tag) == "Event"]
    events = [event for element in elements if (event := _event(element)) is not None]
    return tuple(sorted(events, key=lambda event: (event.time_created or _EPOCH, event.record_id or 0)))


def _hex(value: str) -> int | None:
    try:
        return int(value.strip(), 16)
    except ValueError:
        return None


def _bugcheck_1001(event: SystemEvent) -> Bugcheck | None:
    param1 = event.data.get("param1", event.data.get("Data0", ""))
    match = _PARAM1.match(param1)
    if not match:
        return None
    code = int(match.group("code"), 16)
    if not code:
        return None
    values = [_hex(value) or 0 for value in match.group("parameters").split(",")] + [0, 0, 0, 0]
    return Bugcheck(code, (values[0], values[1], values[2], values[3]), BugcheckSource.EVENT_1001)


def _bugcheck_41(event: SystemEvent) -> Bugcheck | None:
    code_text = event.data.get("BugcheckCode", "").strip()
    if not code_text.isdigit() or not int(code_text):
        return None  # 0: the machine went down without a bugcheck (power, reset)
    parameters = [_hex(event.data.get(f"BugcheckParameter{index}", "0")) or 0 for index in range(1, 5)]
    return Bugcheck(
        int(code_text),  # decimal in this event, unlike everywhere else
        (parameters[0], parameters[1], parameters[2], parameters[3]),
        BugcheckSource.EVENT_41,
    )


def bugcheck_from_event(event: SystemEvent) -> Bugcheck | None:
    """The stop code an event records: 1001 (hex, in param1) or 41 (decimal BugcheckCode)."""
    if event.event_id == BUGCHECK_EVENT:
        return _bugcheck_1001(event)
    if event.event_id == KERNEL_POWER_EVENT:
        return _bugcheck_41(event)
    return None


def dump_path_from_event(event: SystemEvent) -> str | None:
    """Where Windows says it saved the dump (event 1001's param2), if it did."""
    if event.event_id != BUGCHECK_EVENT:
        return None
    path = event.data.get("param2", event.data.get("Data1", "")).strip()
    return path or None


def unexpected_shutdowns(events: Sequence[SystemEvent]) -> list[SystemEvent]:
    """Boots that ended without a clean shutdown: 6008, and 41 without a stop code."""
    return [
        event
        for event in events
        if event.event_id == UNEXPECTED_SHUTDOWN_EVENT
        or (event.event_id == KERNEL_POWER_EVENT and _bugcheck_41(event) is None)
    ]


def _same_crash(first: SystemEvent, second: SystemEvent) -> bool:
    # 41 is written early in the next boot, 1001 once WER has read the dump: minutes apart at most.
    if first.time_created is None or second.time_created is None:
        return True
    return abs((first.time_created - second.time_created).total_seconds()) <= _SAME_CRASH_SECONDS


def latest_bugcheck(events: Sequence[SystemEvent]) -> tuple[Bugcheck, SystemEvent] | None:
    """The newest stop code the log records; for one crash, 1001 wins over 41 (it names the dump)."""
    found = [(bugcheck, event) for event in events if (bugcheck := bugcheck_from_event(event)) is not None]
    if not found:
        return None
    newest, newest_event = max(found, key=lambda pair: pair[1].time_created or _EPOCH)
    same_crash = [
        (bugcheck, event)
        for bugcheck, event in found
        if bugcheck.code == newest.code and _same_crash(event, newest_event)
    ]
    preferred = [pair for pair in same_crash if pair[1].event_id == BUGCHECK_EVENT]
    return (preferred or same_crash)[-1]
