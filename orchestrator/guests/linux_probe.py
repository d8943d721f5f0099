"""Readiness of a Linux guest: the agent answers with a new boot id, has an address, and sshd greets.

The probe only asks whether the guest is ready; crashes and resets reach the cell through
libvirt events, and the deadline is the cell machine's. So the probe simply retries until it
gets an answer or is stopped, waking early when the agent connects.
"""

import base64
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.errors import InfrastructureError

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class GuestEndpoint:
    """How to reach a ready guest."""

    boot_mark: str
    address: str


class _NotReadyError(Exception):
    """The guest is up but not ready in every respect; ask again."""


def read_banner(address: str, port: int = 22, timeout: float = 3.0) -> str:
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.settimeout(timeout)
        banner = connection.recv(256).decode(errors="replace")
    if not banner.startswith("SSH-"):
        raise _NotReadyError(f"port {port} answered {banner[:40]!r}, not an SSH banner")
    return banner.strip()


class LinuxReadinessProbe:
    """Asks one domain's guest agent, in a thread, until the guest is ready or the probe is stopped."""

    def __init__(
        self,
        host: LibvirtHost,
        domain: str,
        network: ipaddress.IPv4Network,
        ssh_public_key: str,
        retry_seconds: float = 2.0,
    ) -> None:
        self._host = host
        self._domain = domain
        self._network = network
        self._public_key = ssh_public_key
        self._retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_problem = ""

    def start(self, stale_mark: str | None, on_ready: Callable[[GuestEndpoint], None]) -> None:
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(stale_mark, on_ready, self._stop),
            name=f"probe-{self._domain}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        self._thread = None

    def wake(self) -> None:
        """The agent connected: ask now rather than at the next retry."""
        self._wake.set()

    def _run(
        self, stale_mark: str | None, on_ready: Callable[[GuestEndpoint], None], stop: threading.Event
    ) -> None:
        while not stop.is_set():
            try:
                endpoint = self.ask(stale_mark)
            except (InfrastructureError, _NotReadyError, OSError) as exc:
                self.last_problem = str(exc)
                self._wake.wait(self._retry_seconds)
                self._wake.clear()
                continue
            if not stop.is_set():
                on_ready(endpoint)
            return

    def ask(self, stale_mark: str | None) -> GuestEndpoint:
        """One attempt; raises when the guest is not ready yet."""
        self._host.agent_command(self._domain, "guest-ping", timeout=3)
        mark = self._boot_mark()
        if mark == stale_mark:
            raise _NotReadyError("the guest still runs the boot from before the reboot")
        addresses = [
            a
            for a in self._host.guest_ipv4_addresses(self._domain)
            if ipaddress.ip_address(a) in self._network
        ]
        if not addresses:
            raise _NotReadyError(f"no address in {self._network} yet")
        self._host.set_authorized_keys(self._domain, "root", [self._public_key])
        read_banner(addresses[0])
        return GuestEndpoint(boot_mark=mark, address=addresses[0])

    def _boot_mark(self) -> str:
        started = self._host.agent_command(
            self._domain, "guest-exec", {"path": "/bin/cat", "arg": [BOOT_ID_PATH], "capture-output": True}
        )
        for _ in range(25):
            status = self._host.agent_command(self._domain, "guest-exec-status", {"pid": started["pid"]})
            if status.get("exited"):
                if status.get("exitcode") != 0:
                    raise _NotReadyError(f"reading the boot id exited with {status.get('exitcode')}")
                return base64.b64decode(status.get("out-data", "")).decode().strip()
            time.sleep(0.2)
        raise _NotReadyError("reading the boot id did not finish")
