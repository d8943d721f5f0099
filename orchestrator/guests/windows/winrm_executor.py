"""PowerShell in a Windows guest over WinRM (pywinrm): NTLM over HTTPS with message encryption.

The channel needs one thing from WinRM: run a script, get its exit code and output, within a
deadline, and stop when asked. ``CommandExecutor`` is that interface; ``PyWinRMExecutor`` is the
real adapter on ``winrm.protocol.Protocol``, built by a factory so tests can hand it a protocol
whose transport replays captured Windows responses. pywinrm's and requests' exceptions are
translated here, at the boundary: nothing above sees them.

Errors:
- ``WinRMUnreachableError`` (InfrastructureError): nothing answered, or the TLS/HTTP exchange failed --
  during readiness this means "not yet";
- ``WinRMAuthenticationError`` (InfrastructureError): the guest refused the image's credentials;
- ``WinRMCommandTimeoutError`` (InfrastructureError): the script ran past its deadline;
- ``CanceledError``: the caller's cancel event was set.
"""

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol
from xml.etree import ElementTree

import requests
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
)
from winrm.protocol import Protocol as WinRMProtocol

from orchestrator.errors import CanceledError, ConfigurationError, InfrastructureError

UTF8_CODEPAGE = 65001  # the shell's output code page: PowerShell writes UTF-8 to us
_POWERSHELL_OPTIONS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
_UNREACHABLE = (WinRMError, WinRMTransportError, WinRMOperationTimeoutError, requests.RequestException)


class WinRMUnreachableError(InfrastructureError):
    """Nothing answered on the WinRM port, or the exchange broke off."""


class WinRMAuthenticationError(InfrastructureError):
    """The guest refused the credentials the image was built with."""


class WinRMCommandTimeoutError(InfrastructureError):
    """A script ran past its deadline."""


@dataclass(frozen=True)
class WinRMTarget:
    """Where and how to reach one guest's WinRM HTTPS listener."""

    address: str
    username: str
    password: str
    port: int = 5986
    # The image makes its own self-signed certificate; the guest network is isolated and NTLM's
    # message encryption protects the content. Give a CA bundle to validate instead.
    server_cert_validation: Literal["validate", "ignore"] = "ignore"
    ca_trust_path: str | None = None
    operation_timeout_s: int = 20
    read_timeout_s: int = 30  # must exceed the operation timeout: the server may hold a receive that long

    def __post_init__(self) -> None:
        if self.read_timeout_s <= self.operation_timeout_s or self.operation_timeout_s < 1:
            raise ConfigurationError(
                f"winrm: read_timeout_s ({self.read_timeout_s}) must exceed operation_timeout_s "
                f"({self.operation_timeout_s}), and both must be positive"
            )

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}/wsman"


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str  # PowerShell's CLIXML error stream reduced to its text

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandExecutor(Protocol):
    """Runs PowerShell in one guest; every call blocks."""

    def run_powershell(
        self, script: str, *, timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult: ...


ProtocolFactory = Callable[[WinRMTarget], WinRMProtocol]


def ntlm_https_protocol(target: WinRMTarget) -> WinRMProtocol:
    """A pywinrm protocol for the target: NTLM, HTTPS, messages encrypted on top of TLS."""
    return WinRMProtocol(
        endpoint=target.endpoint,
        transport="ntlm",
        username=target.username,
        password=target.password,
        server_cert_validation=target.server_cert_validation,
        ca_trust_path=target.ca_trust_path if target.ca_trust_path else "legacy_requests",
        message_encryption="always",
        operation_timeout_sec=target.operation_timeout_s,
        read_timeout_sec=target.read_timeout_s,
        proxy=None,  # the guest network is local: a proxy from the environment would only get in the way
    )


def encode_powershell(script: str) -> str:
    """PowerShell's -EncodedCommand form: base64 of the UTF-16LE script."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def clixml_text(stderr: str) -> str:
    """The text of PowerShell's CLIXML error stream (``#< CLIXML`` then ``<Objs>``); other text as is."""
    marker = "#< CLIXML"
    if not stderr.startswith(marker):
        return stderr
    body = stderr[len(marker) :].strip()
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - the guest's own PowerShell output, no DTD possible
    except ElementTree.ParseError:
        return stderr
    pieces = [
        (element.text or "").replace("_x000D__x000A_", "\n")
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") == "Error"
    ]
    return "".join(pieces).strip() or stderr


class PyWinRMExecutor:
    """``CommandExecutor`` on pywinrm: one shell per script, closed whatever happens."""

    def __init__(
        self,
        target: WinRMTarget,
        protocol_factory: ProtocolFactory = ntlm_https_protocol,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._protocol_factory = protocol_factory
        self._clock = clock

    def run_powershell(
        self, script: str, *, timeout_s: float, cancel: threading.Event | None = None
    ) -> CommandResult:
        deadline = self._clock() + timeout_s
        try:
            protocol = self._protocol_factory(self.target)
            shell = protocol.open_shell(codepage=UTF8_CODEPAGE, noprofile=True)
            try:
                command = protocol.run_command(
                    shell,
                    "powershell.exe",
                    [*_POWERSHELL_OPTIONS, "-EncodedCommand", encode_powershell(script)],
                )
                try:
                    return self._collect(protocol, shell, command, deadline, cancel)
                finally:
                    protocol.cleanup_command(shell, command)
            finally:
                protocol.close_shell(shell)
        except AuthenticationError as exc:
            raise WinRMAuthenticationError(
                f"WinRM at {self.target.endpoint} refused user {self.target.username!r}: {exc}"
            ) from exc
        except _UNREACHABLE as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise WinRMUnreachableError(f"WinRM at {self.target.endpoint}: {reason}") from exc

    def _collect(
        self,
        protocol: WinRMProtocol,
        shell: str,
        command: str,
        deadline: float,
        cancel: threading.Event | None,
    ) -> CommandResult:
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            if cancel is not None and cancel.is_set():
                raise CanceledError("the PowerShell command was canceled")
            if self._clock() > deadline:
                raise WinRMCommandTimeoutError(
                    f"a PowerShell command in {self.target.address} ran past its deadline"
                )
            try:
                out, err, exit_code, done = protocol.get_command_output_raw(shell, command)
            except WinRMOperationTimeoutError:
                continue  # the server held the receive for the operation timeout: nothing new yet
            stdout.append(out)
            stderr.append(err)
            if done:
                return CommandResult(
                    exit_code=exit_code,
                    stdout=b"".join(stdout).decode("utf-8", errors="replace"),
                    stderr=clixml_text(b"".join(stderr).decode("utf-8", errors="replace")),
                )
