"""The PowerShell the Windows channel runs in guests, and the parsing of what it prints.

Pure: scripts are built from data with every value quoted as a PowerShell single-quoted string,
and every script prints one JSON document, parsed here. The channel only moves them over WinRM.
"""

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.candidate import WINDOWS_SERVICE_NAME
from orchestrator.guests.windows.events import CRASH_EVENT_IDS, EventXmlError, SystemEvent, parse_events

MINIDUMP_DIRECTORY = r"C:\Windows\Minidump"
_NAME = re.compile(WINDOWS_SERVICE_NAME)


class GuestOutputError(ValueError):
    """A script printed something other than the document it always prints."""


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted string literal: nothing inside is expanded; ' is doubled."""
    return "'" + value.replace("'", "''") + "'"


def _utc_literal(moment: datetime) -> str:
    stamp = ps_quote(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"[datetime]::SpecifyKind([datetime]::ParseExact({stamp}, 'yyyy-MM-ddTHH:mm:ss', $null), 'Utc')"


def _fill(template: str, **values: str) -> str:
    """Put already-quoted PowerShell values into a template's @@NAME@@ markers."""
    for name, value in values.items():
        template = template.replace(f"@@{name}@@", value)
    return template


# -- readiness -----------------------------------------------------------------------------------

READINESS_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$prefetch = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management\PrefetchParameters'
$bootId = (Get-ItemProperty -Path $prefetch -Name BootId -ErrorAction SilentlyContinue).BootId
[pscustomobject]@{
    last_boot_up_time = $os.LastBootUpTime.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
    boot_id = $bootId
    build = $os.BuildNumber
    caption = $os.Caption
} | ConvertTo-Json -Compress
"""
"""Prints the boot facts. BootId (a counter the prefetcher raises at every boot) makes the boot
mark; LastBootUpTime is derived from the clock and may move by a second within one boot, so it is
the mark only where BootId is missing."""


@dataclass(frozen=True)
class BootFacts:
    last_boot_up_time: str
    boot_id: int | None
    build: str
    caption: str

    @property
    def boot_mark(self) -> str:
        return f"boot-id {self.boot_id}" if self.boot_id is not None else f"up since {self.last_boot_up_time}"


def _document(stdout: str) -> dict[str, object]:
    text = stdout.strip()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GuestOutputError(f"expected one JSON document, got {text[:120]!r}") from exc
    if not isinstance(document, dict):
        raise GuestOutputError(f"expected a JSON object, got {type(document).__name__}")
    return document


def parse_boot_facts(stdout: str) -> BootFacts:
    document = _document(stdout)
    last_boot = document.get("last_boot_up_time")
    if not isinstance(last_boot, str) or not last_boot:
        raise GuestOutputError("the guest reported no LastBootUpTime")
    boot_id = document.get("boot_id")
    return BootFacts(
        last_boot_up_time=last_boot,
        boot_id=boot_id if isinstance(boot_id, int) and not isinstance(boot_id, bool) else None,
        build=str(document.get("build") or ""),
        caption=str(document.get("caption") or ""),
    )


# -- health probe ---------------------------------------------------------------------------------


_HEALTH_TEMPLATE = r"""
$ErrorActionPreference = 'Stop'
$since = @@SINCE@@
$serviceName = @@SERVICE@@
$service = $null
if ($serviceName) {
    $svc = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
    if ($svc) {
        $service = [pscustomobject]@{
            name = $svc.Name; status = [string]$svc.Status; start_type = [string]$svc.StartType }
    }
}
$filter = @{ LogName = 'System'; Id = @(@@EVENT_IDS@@); StartTime = $since }
$events = @(Get-WinEvent -FilterHashtable $filter -ErrorAction SilentlyContinue)
$xml = '<Events>' + (($events | ForEach-Object { $_.ToXml() }) -join '') + '</Events>'
$dumps = @(Get-ChildItem -Path @@DUMP_DIRECTORY@@ -Filter '*.dmp' -ErrorAction SilentlyContinue |
    Where-Object { $_.LastWriteTimeUtc -ge $since } | Sort-Object LastWriteTimeUtc |
    ForEach-Object { [pscustomobject]@{
        name = $_.Name; size = $_.Length; written = $_.LastWriteTimeUtc.ToString('yyyy-MM-ddTHH:mm:ssZ') } })
ConvertTo-Json -Compress -Depth 4 -InputObject ([pscustomobject]@{
    service = $service; events_xml = $xml; minidumps = $dumps })
"""


def health_script(service: str | None, since: datetime) -> str:
    """Service state, the crash events since ``since``, and the minidumps written since then."""
    if service is not None and not _NAME.match(service):
        raise ValueError(f"sensor service name {service!r} is not a Windows service name")
    return _fill(
        _HEALTH_TEMPLATE,
        SINCE=_utc_literal(since),
        SERVICE=ps_quote(service) if service is not None else "$null",
        EVENT_IDS=",".join(str(event_id) for event_id in CRASH_EVENT_IDS),
        DUMP_DIRECTORY=ps_quote(MINIDUMP_DIRECTORY),
    )


@dataclass(frozen=True)
class ServiceState:
    name: str
    status: str  # Running, Stopped, StartPending, ...
    start_type: str  # Automatic, Manual, Disabled, ...

    @property
    def running(self) -> bool:
        return self.status == "Running"


@dataclass(frozen=True)
class DumpFile:
    name: str
    size: int
    written: str

    @property
    def path(self) -> str:
        return f"{MINIDUMP_DIRECTORY}\\{self.name}"


@dataclass(frozen=True)
class HealthFacts:
    service: ServiceState | None  # None: no service asked for, or it does not exist
    events: tuple[SystemEvent, ...]
    minidumps: tuple[DumpFile, ...]  # oldest first


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_health_facts(stdout: str) -> HealthFacts:
    document = _document(stdout)
    raw_service = document.get("service")
    service = None
    if isinstance(raw_service, dict):
        service = ServiceState(
            name=str(raw_service.get("name", "")),
            status=str(raw_service.get("status", "")),
            start_type=str(raw_service.get("start_type", "")),
        )
    try:
        events = parse_events(str(document.get("events_xml") or ""))
    except EventXmlError as exc:
        raise GuestOutputError(str(exc)) from exc
    raw_dumps = document.get("minidumps") or []
    if isinstance(raw_dumps, dict):  # PowerShell 5.1 renders a one-element array as its element
        raw_dumps = [raw_dumps]
    if not isinstance(raw_dumps, list):
        raise GuestOutputError("minidumps is not a list")
    dumps = tuple(
        DumpFile(name=str(item["name"]), size=int(item["size"]), written=str(item.get("written", "")))
        for item in raw_dumps
        if isinstance(item, dict) and _NAME.match(str(item.get("name", ""))) and _is_size(item.get("size"))
    )
    return HealthFacts(service=service, events=events, minidumps=dumps)


# -- files ---------------------------------------------------------------------------------------


def read_file_script(path: str, max_bytes: int) -> str:
    """Prints a file's bytes as base64 in one JSON document, refusing files over ``max_bytes``."""
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"$item = Get-Item -LiteralPath {ps_quote(path)}\n"
        f"if ($item.Length -gt {int(max_bytes)}) {{ throw \"$($item.FullName) is $($item.Length) bytes\" }}\n"
        "ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ size = $item.Length;"
        " base64 = [Convert]::ToBase64String([IO.File]::ReadAllBytes($item.FullName)) })\n"
    )


def parse_file_content(stdout: str) -> bytes:
    document = _document(stdout)
    encoded = document.get("base64")
    if not isinstance(encoded, str):
        raise GuestOutputError("no base64 content")
    data = base64.b64decode(encoded, validate=True)
    if document.get("size") != len(data):
        raise GuestOutputError(f"announced {document.get('size')} bytes, received {len(data)}")
    return data


REBOOT_SCRIPT = "shutdown.exe /r /t 5 /f /d p:4:1 /c 'endpoint testbed reboot'\nexit $LASTEXITCODE\n"
"""Returns at once (the reboot starts in five seconds), so the command's answer still arrives.
Reason p:4:1 (planned, application maintenance) keeps the shutdown out of the unexpected ones."""
