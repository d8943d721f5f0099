"""An engine for the service's tests: the real run machinery over simulated guests, no VM.

Everything but the guests is the production code: ``RunDriver`` (slots, retries, cancel,
resumption, event numbering, the verdict), the cell state machine through ``CellDriver`` on a
``ThreadExecutor``, ``HostPool`` with slot leases, ``EventBus`` persisting into the service's SQL
store (and run.json/events.jsonl beside it). Only the ports are simulated, and the machine's
deadlines run ``TIME_SCALE`` times faster, so a whole cell takes about a second.

A guest behaves as its image's name says:
- ``*crash*``: panics right after the candidate is installed (its console shows an oops, an ANSI
  sequence and a ``<script>`` line, as an untrusted guest may print);
- ``*slow*``: every boot takes ``SLOW_BOOT_S`` to answer, so a test can watch or cancel it;
- ``*hang*``: never answers (a control image declared to hang, as ``control-hang``);
- anything else: a healthy guest.
"""

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.adapters.run_lock import RunLock
from orchestrator.config import Settings
from orchestrator.core.cell_events import (
    CellEvent,
    DomainCondition,
    DomainCrashed,
    DomainReset,
    GuestAnswered,
    HostReconnected,
    ProbeFinished,
    StepFinished,
)
from orchestrator.core.crash import parse_console
from orchestrator.core.outcomes import CellOutcome
from orchestrator.core.plan import CellPlan, InstallStep, StepKind
from orchestrator.core.ports import Evidence
from orchestrator.core.probe_rules import REQUIRED_SYSCTLS, ProbeReport
from orchestrator.core.records import CellResult
from orchestrator.engine.event_bus import EventBus
from orchestrator.engine.executor import ThreadExecutor
from orchestrator.engine.gate import PreparedGate, RunHandle, new_run_id
from orchestrator.engine.host_pool import HostPool
from orchestrator.engine.run_driver import Resumption, RunDriver
from orchestrator.engine.run_files import RunFiles, Stores
from orchestrator.engine.timers import ThreadTimers
from orchestrator.images.catalog import ImageCatalog, ImageRecord
from orchestrator.store import SqlRunStore
from tests.conftest import REPO_ROOT
from tests.memory_leases import MemoryLeases

TIME_SCALE = 0.01
SLOW_BOOT_S = 0.6
QUICK_S = 0.02
SLOTS = 2
CRASH_CONSOLE = (
    REPO_ROOT / "tests/fixtures/console/sensor-zero-filled-install-panic-6.1.0-56.log"
).read_text(errors="replace")
HOSTILE_LINES = (
    "\x1b[2J\x1b[31mscreen cleared by the guest\x1b[0m\n"
    "<script>document.title='pwned'</script><b>bold?</b>\n"
    "bell\x07 and nul\x00 in a line\n"
)


class ScaledTimers(ThreadTimers):
    """Real timers, every deadline ``TIME_SCALE`` as long."""

    def arm(self, key: Any, seconds: float, fire: Callable[[], None]) -> None:
        super().arm(key, seconds * TIME_SCALE, fire)


def _later(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


@dataclass
class SimulatedGuest:
    """The ``CellPorts`` of one simulated cell."""

    plan: CellPlan
    post: Callable[[CellEvent], None]
    evidence_dir: Path
    host_name: str = "sim"
    boots: int = 0
    stopped: bool = False
    crashed: bool = False
    lines: list[str] = field(default_factory=list)

    @property
    def _image(self) -> str:
        return self.plan.image.name

    def _say(self, line: str) -> None:
        self.lines.append(line)

    def _post(self, event: CellEvent) -> None:
        if not self.stopped:
            self.post(event)

    def provision(self) -> None:
        self._say(f"[    0.000000] Linux version {self.plan.image.kernel} (simulated)")

    def start_probe(self, boot: int, stale_mark: str | None) -> None:
        if "hang" in self._image:
            self._say(f"[    1.000000] simulated boot {boot}: hung")
            return
        delay = SLOW_BOOT_S if "slow" in self._image else QUICK_S
        self._say(f"[    1.000000] simulated boot {boot}: up")
        _later(delay, lambda: self._post(GuestAnswered(f"boot-{self.boots}")))

    def start_health_probe(self, boot: int, health_check: bool) -> None:
        report = ProbeReport(
            agent_ok=True,
            boot_mark=f"boot-{self.boots}",
            ssh_ok=True,
            sysctls=dict(REQUIRED_SYSCTLS),
            tainted=0,
            health_rc=0 if health_check else None,
        )
        _later(QUICK_S, lambda: self._post(ProbeFinished(report)))

    def stop_probe(self) -> None:
        pass

    def start_step(self, step: InstallStep) -> None:
        def finish() -> None:
            self._say(f"[   10.000000] simulated install: {step}")
            self._post(StepFinished(step, ok=True))
            if step.kind is StepKind.CANDIDATE and "crash" in self._image:
                self.crashed = True
                self._post(DomainCrashed("panicked"))

        _later(QUICK_S, finish)

    def cancel_step(self) -> None:
        pass

    def request_reboot(self, boot: int) -> None:
        self.boots += 1
        self._post(DomainReset())  # at once, as libvirt reports the reset before the guest boots again

    def reset_guest(self) -> None:
        self.request_reboot(self.boots + 1)

    def inject_nmi(self) -> None:
        _later(QUICK_S, lambda: self._post(DomainCrashed("panicked")))

    def start_reconnect(self) -> None:
        _later(QUICK_S, lambda: self._post(HostReconnected(DomainCondition.RUNNING)))

    def collect_evidence(self, outcome: CellOutcome, reason: str, summary: dict[str, Any]) -> Evidence:
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        console = "\n".join(self.lines) + "\n"
        crash = None
        if self.crashed:
            console += HOSTILE_LINES + CRASH_CONSOLE
            report = parse_console(console)
            crash = report.as_dict() if report is not None else None
            (self.evidence_dir / "crash.json").write_text(json.dumps(crash, indent=2))
        (self.evidence_dir / "console.log").write_text(console)
        (self.evidence_dir / "cell.json").write_text(json.dumps(summary, indent=2, default=str))
        return Evidence(directory=str(self.evidence_dir), crash=crash)

    def teardown(self) -> None:
        self.stopped = True


class SimulatedHost:
    """A host with ``SLOTS`` slots and plenty of memory, handing out simulated guests."""

    def __init__(self, name: str) -> None:
        self.name = name

    def max_cells(self) -> int:
        return SLOTS

    def free_memory_mib(self) -> int:
        return 64 * 1024

    def total_memory_mib(self) -> int:
        return 64 * 1024

    def domain_type(self) -> str:
        return "qemu"  # as this machine: TCG


class _CellHost:
    """What a run sees of the simulated host: a way to make its cells' ports."""

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self._run_dir = run_dir

    def make_ports(self, plan: CellPlan, post: Callable[[CellEvent], None]) -> SimulatedGuest:
        base = self._run_dir / "cells" / plan.cell_id
        return SimulatedGuest(plan, post, base if plan.attempt == 1 else base / f"attempt-{plan.attempt}")


class SimulatedEngine:
    """``api.engine.Engine`` over simulated guests (see the module's notes)."""

    def __init__(self, settings: Settings, store: SqlRunStore) -> None:
        self.settings = settings
        self.store = Stores([store, RunFiles(settings.runs_dir)])
        self.bus = EventBus(self.store)
        self._leases = MemoryLeases()
        self._pool: HostPool | None = None
        self.opened = 0

    @property
    def pool(self) -> HostPool:
        assert self._pool is not None
        return self._pool

    def open(self) -> object:
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        self._pool = HostPool([SimulatedHost("sim")], self._leases, recheck_s=0.2)
        self.opened += 1
        return "nothing to sweep: no VM was ever started"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def start(
        self,
        prepared: PreparedGate,
        *,
        run_id: str | None = None,
        priority: int = 0,
        candidate_id: str | None = None,
        matrix_id: str | None = None,
        submitted_by: str | None = None,
    ) -> RunHandle:
        run_id = run_id or new_run_id()
        run_dir = self.settings.runs_dir / run_id
        run_dir.mkdir(parents=True)
        lock = RunLock(run_dir)
        self.store.create_run(
            run_id,
            prepared.plan.as_dict(),
            candidate_id=candidate_id,
            matrix_id=matrix_id,
            priority=priority,
            submitted_by=submitted_by,
            evidence_dir=str(run_dir),
        )
        return self._launch(prepared, run_id, run_dir, lock, priority, None)

    def resume(
        self,
        prepared: PreparedGate,
        run_id: str,
        *,
        finished: Sequence[CellResult],
        last_sequence: int,
        attempts: Mapping[str, int],
        resumes: int,
        priority: int = 0,
    ) -> RunHandle:
        run_dir = self.settings.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)
        give_up = f"the run was interrupted {resumes + 1} times" if resumes >= 1 else ""
        resumption = Resumption(tuple(finished), last_sequence, dict(attempts), give_up)
        return self._launch(prepared, run_id, run_dir, lock, priority, resumption)

    def _launch(
        self,
        prepared: PreparedGate,
        run_id: str,
        run_dir: Path,
        lock: RunLock,
        priority: int,
        resumed: Resumption | None,
    ) -> RunHandle:
        driver = RunDriver(
            run_id,
            prepared.plan,
            self.pool,
            {"sim": _CellHost("sim", run_dir)},
            publish=self.bus.publish,
            executor=ThreadExecutor(make_timers=ScaledTimers),
            evidence_dir=str(run_dir),
            priority=priority,
            retries=prepared.spec.retries,
            resumed=resumed,
        )
        handle = RunHandle(run_id, run_dir, driver)

        def work() -> None:
            try:
                result = driver.run()
                self.store.finish_run(result)
            except BaseException as exc:  # noqa: BLE001 - the handle must learn how it ended
                handle._finished(None, exc)
            else:
                handle._finished(result)
            finally:
                lock.release()

        threading.Thread(target=work, name=f"run-{run_id}", daemon=True).start()
        return handle


def write_image_catalog(
    images_dir: Path,
    names: Sequence[str] = ("sim-linux", "sim-linux-crash", "sim-linux-slow", "sim-linux-hang"),
) -> None:
    """A catalog of simulated images (tiny placeholder files), as ``testbed images build`` writes one;
    the ``*hang*`` one is a control image declared to hang."""
    catalog = ImageCatalog(images_dir)
    for name in names:
        directory = images_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        for file_name in ("disk.qcow2", "vmlinuz", "initrd.img"):
            (directory / file_name).write_bytes(b"simulated\n")
        catalog.put(
            ImageRecord(
                name=name,
                kind="debian",
                os_family="linux",
                os_version="debian-12",
                kernel="6.1.0-56-amd64",
                digest=hashlib.sha256(name.encode()).hexdigest(),
                directory=directory,
                disk=directory / "disk.qcow2",
                kernel_image=directory / "vmlinuz",
                initrd=directory / "initrd.img",
                kernel_cmdline="console=ttyS0",
                built_at=time.time(),
                disk_bytes=10,
                expected_outcome="hung" if "hang" in name else None,
            )
        )
