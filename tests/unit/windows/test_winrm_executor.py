"""The WinRM executor against Windows' own WS-Management responses, replayed.

The responses were captured from Windows hosts by pywinrm's test suite (see the fixture README).
A transport stub answers each request pywinrm builds with the response recorded for the request's
action; as in pywinrm's suite, message ids are pinned so the recorded RelatesTo headers match.
"""

import threading
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError

from orchestrator.errors import CanceledError, ConfigurationError
from orchestrator.guests.windows.winrm_executor import (
    UTF8_CODEPAGE,
    PyWinRMExecutor,
    WinRMAuthenticationError,
    WinRMCommandTimeoutError,
    WinRMTarget,
    WinRMUnreachableError,
    clixml_text,
    encode_powershell,
    ntlm_https_protocol,
)

pytestmark = pytest.mark.unit

ADDRESSING = "{http://schemas.xmlsoap.org/ws/2004/08/addressing}"
TARGET = WinRMTarget(address="192.168.123.7", username="testbed", password="image-password")


def recorded(fixtures_dir: Path, name: str) -> str:
    return (fixtures_dir / "windows" / "winrm" / name).read_text()


class ReplayTransport:
    """Answers by action (Create, Command, Receive, Signal, Delete) from recorded responses, in order."""

    def __init__(self, replies: dict[str, list[str | Exception]]) -> None:
        self._replies = replies
        self.requests: list[tuple[str, ElementTree.Element]] = []
        self.closed = 0

    def send_message(self, message: str) -> bytes:
        envelope = ElementTree.fromstring(message)
        action = envelope.findtext(f".//{ADDRESSING}Action", "").rsplit("/", 1)[-1]
        self.requests.append((action, envelope))
        queue = self._replies[action]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply.encode()

    def close_session(self) -> None:
        self.closed += 1

    def actions(self) -> list[str]:
        return [action for action, _ in self.requests]


@pytest.fixture(autouse=True)
def pinned_message_ids(monkeypatch):
    # The recorded responses relate to message uuid:11111111-...-1111, as pywinrm's suite pins it.
    monkeypatch.setattr(
        "winrm.protocol.uuid.uuid4", lambda: uuid.UUID("11111111-1111-1111-1111-111111111111")
    )


def executor_with(transport: ReplayTransport, clock=None) -> PyWinRMExecutor:
    def replaying(target: WinRMTarget):
        protocol = ntlm_https_protocol(target)  # the real protocol object, its transport replaced
        protocol.transport = transport
        return protocol

    return PyWinRMExecutor(TARGET, protocol_factory=replaying, **({"clock": clock} if clock else {}))


def session(
    fixtures_dir, receive: list[str | Exception], command: str = "command-response.xml"
) -> ReplayTransport:
    return ReplayTransport(
        {
            "Create": [recorded(fixtures_dir, "open-shell-response.xml")],
            "Command": [recorded(fixtures_dir, command)],
            "Receive": receive,
            "Signal": [recorded(fixtures_dir, "signal-response.xml")],
            "Delete": [recorded(fixtures_dir, "delete-shell-response.xml")],
        }
    )


def test_a_command_runs_in_its_own_shell(fixtures_dir):
    transport = session(fixtures_dir, [recorded(fixtures_dir, "receive-ipconfig-response.xml")])
    result = executor_with(transport).run_powershell("ipconfig /all", timeout_s=60)
    assert result.ok
    assert result.exit_code == 0
    assert "Windows IP Configuration" in result.stdout
    assert "Host Name . . . . . . . . . . . . : WINDOWS-HOST" in result.stdout
    assert transport.actions() == ["Create", "Command", "Receive", "Signal", "Delete"]


def test_the_requests_carry_the_script_and_the_settings(fixtures_dir):
    transport = session(fixtures_dir, [recorded(fixtures_dir, "receive-ipconfig-response.xml")])
    executor_with(transport).run_powershell("Get-Service 'It''s'", timeout_s=60)
    create = transport.requests[0][1]
    options = {option.get("Name"): option.text for option in create.iter() if option.tag.endswith("Option")}
    assert options["WINRS_CODEPAGE"] == str(UTF8_CODEPAGE)
    assert options["WINRS_NOPROFILE"] == "TRUE"
    assert create.findtext(".//{http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd}OperationTimeout") == "PT20S"
    command = transport.requests[1][1]
    line = " ".join(
        element.text or "" for element in command.iter() if element.tag.endswith(("Command", "Arguments"))
    )
    assert line.startswith(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
    )
    assert line.endswith(encode_powershell("Get-Service 'It''s'"))


def test_a_failing_script_reports_its_exit_code_and_error_text(fixtures_dir):
    transport = session(
        fixtures_dir,
        [recorded(fixtures_dir, "receive-write-error-response.xml")],
        "command-response-powershell.xml",
    )
    result = executor_with(transport).run_powershell('Write-Error "Error"', timeout_s=60)
    assert (result.ok, result.exit_code, result.stdout) == (False, 1, "")
    assert result.stderr.startswith('Write-Error "Error" : Error')
    assert "FullyQualifiedErrorId" in result.stderr
    assert "CLIXML" not in result.stderr


def test_a_receive_that_waits_out_its_operation_timeout_is_asked_again(fixtures_dir):
    fault = WinRMTransportError("http", 500, recorded(fixtures_dir, "operation-timeout-fault.xml"))
    transport = session(fixtures_dir, [fault, fault, recorded(fixtures_dir, "receive-ipconfig-response.xml")])
    result = executor_with(transport).run_powershell("ipconfig /all", timeout_s=600)
    assert result.ok
    assert transport.actions().count("Receive") == 3


def test_a_command_past_its_deadline_is_stopped_and_its_shell_closed(fixtures_dir):
    fault = WinRMTransportError("http", 500, recorded(fixtures_dir, "operation-timeout-fault.xml"))
    transport = session(fixtures_dir, [fault])
    ticks = iter(range(0, 10_000, 20))  # every look at the clock: 20 s later
    with pytest.raises(WinRMCommandTimeoutError, match="ran past its deadline"):
        executor_with(transport, clock=lambda: next(ticks)).run_powershell("Start-Sleep 3600", timeout_s=100)
    assert transport.actions()[-2:] == ["Signal", "Delete"]
    assert transport.closed == 1


def test_cancel_stops_the_command_and_closes_the_shell(fixtures_dir):
    transport = session(fixtures_dir, [recorded(fixtures_dir, "receive-ipconfig-response.xml")])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CanceledError):
        executor_with(transport).run_powershell("ipconfig", timeout_s=60, cancel=cancel)
    assert transport.actions() == ["Create", "Command", "Signal", "Delete"]


@pytest.mark.parametrize(
    ("failure", "error", "message"),
    [
        (
            requests.ConnectionError("[Errno 111] Connection refused"),
            WinRMUnreachableError,
            "Connection refused",
        ),
        (requests.ReadTimeout("read timed out"), WinRMUnreachableError, "ReadTimeout"),
        (
            WinRMTransportError("http", 503, "service unavailable"),
            WinRMUnreachableError,
            "WinRMTransportError",
        ),
        (
            InvalidCredentialsError("the specified credentials were rejected by the server"),
            WinRMAuthenticationError,
            "refused user 'testbed'",
        ),
    ],
)
def test_transport_trouble_becomes_the_testbeds_own_errors(failure, error, message):
    transport = ReplayTransport({"Create": [failure]})
    with pytest.raises(error, match=message):
        executor_with(transport).run_powershell("hostname", timeout_s=60)


def test_the_protocol_speaks_ntlm_over_https_with_message_encryption():
    protocol = ntlm_https_protocol(TARGET)
    assert protocol.transport.endpoint == "https://192.168.123.7:5986/wsman"
    assert protocol.transport.auth_method == "ntlm"
    assert protocol.transport.message_encryption == "always"
    assert protocol.read_timeout_sec > protocol.operation_timeout_sec
    assert protocol.transport.server_cert_validation == "ignore"


def test_ipv6_addresses_are_bracketed():
    assert (
        WinRMTarget(address="fd00::7", username="u", password="p").endpoint == "https://[fd00::7]:5986/wsman"
    )


@pytest.mark.parametrize(("read", "operation"), [(20, 20), (10, 20), (30, 0)])
def test_the_read_timeout_must_exceed_the_operation_timeout(read, operation):
    with pytest.raises(ConfigurationError, match="read_timeout_s"):
        WinRMTarget(
            address="a", username="u", password="p", read_timeout_s=read, operation_timeout_s=operation
        )


@pytest.mark.parametrize(
    ("stderr", "text"),
    [
        ("plain error\n", "plain error\n"),
        ("#< CLIXML\r\nnot xml", "#< CLIXML\r\nnot xml"),
        (
            '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            '<S S="Error">Access denied_x000D__x000A_</S><S S="Error">line two</S></Objs>',
            "Access denied\nline two",
        ),
    ],
)
def test_clixml_text(stderr, text):
    assert clixml_text(stderr) == text
