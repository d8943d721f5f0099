"""The gate on this machine's libvirt hosts: plan and validate, then run — blocking or not.

``prepare_gate`` does everything that can fail because of bad input, before any VM exists.
``Testbed`` is the long-lived side of one process (the CLI's single run, or the service's many):
connected hosts, the host pool, the event bus and the run store. ``Testbed.start`` returns a
``RunHandle`` at once (ansible-runner's ``run_async``); ``run_gate`` is the same call, waited for.
"""

import hashlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.adapters.run_lock import RunLock
from orchestrator.adapters.slot_leases import SlotLeases
from orchestrator.candidate import Candidate, load_candidate
from orchestrator.config import Settings
from orchestrator.core.matrix import MatrixSpec, parse_matrix, plan_run
from orchestrator.core.plan import CellPlan, RunPlan
from orchestrator.core.ports import CellPorts, Post
from orchestrator.core.records import RunEvent, RunResult
from orchestrator.engine.event_bus import EventBus, RunStore
from orchestrator.engine.executor import CellExecutor, ThreadExecutor
from orchestrator.engine.host_pool import HostPool
from orchestrator.engine.reaper import ReapReport, reap
from orchestrator.engine.run_driver import RunDriver
from orchestrator.engine.run_files import RunFiles, Stores
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.guests import FAMILIES, DomainCell, RunContext
from orchestrator.guests.run_context import make_ssh_key
from orchestrator.images.catalog import ImageCatalog, ImageRecord

PLAYBOOKS_DIR = Path(__file__).resolve().parents[2] / "playbooks"


@dataclass(frozen=True)
class PreparedGate:
    """A validated plan and everything it refers to; nothing has been started."""

    spec: MatrixSpec
    plan: RunPlan
    candidate: Candidate
    images: dict[str, ImageRecord]
    matrix_text: str = ""
    matrix_sha256: str = ""
    matrix_source: str = ""


def prepare_gate(settings: Settings, matrix_path: Path, candidate_path: Path) -> PreparedGate:
    try:
        text = matrix_path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"matrix: cannot read {matrix_path}: {exc.strerror}") from exc
    return prepare_gate_from_text(settings, text, candidate_path, source=str(matrix_path))


def prepare_gate_from_text(settings: Settings, text: str, candidate_path: Path, source: str) -> PreparedGate:
    spec = parse_matrix(text, source=source)
    candidate = load_candidate(candidate_path)
    images = ImageCatalog(settings.images_dir).usable()
    plan = plan_run(spec, {name: record.facts() for name, record in images.items()}, candidate.facts())
    digest = sha256_of_text(text)
    return PreparedGate(spec, plan, candidate, images, text, digest, source)


def sha256_of_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class LibvirtCellHost:
    """A libvirt host as a run sees it: a way to make its cells' ports."""

    def __init__(self, host: LibvirtHost, run: RunContext) -> None:
        self.name = host.name
        self._host = host
        self._run = run

    def make_ports(self, plan: CellPlan, post: Post) -> CellPorts:
        make_family = FAMILIES.get(plan.image.os_family)
        if make_family is None:
            raise InfrastructureError(f"no guest family plug-in for {plan.image.os_family}")
        return DomainCell(plan, post, self._host, self._run, make_family(self._host, self._run))


class RunHandle:
    """A run in progress: wait for its result or cancel it, from any thread."""

    def __init__(self, run_id: str, evidence_dir: Path, driver: RunDriver) -> None:
        self.run_id = run_id
        self.evidence_dir = evidence_dir
        self._driver = driver
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._error: BaseException | None = None

    def _finished(self, result: RunResult | None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """The result, or None if ``timeout`` passed first. Re-raises the run's own failure."""
        if not self._done.wait(timeout):
            return None
        if self._error is not None:
            raise InfrastructureError(f"run {self.run_id} failed: {self._error}") from self._error
        return self._result

    def cancel(self, reason: str) -> None:
        self._driver.cancel(reason)


class Testbed:
    """The engine of one process: hosts stay connected, one pool is shared by every run."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: RunStore | None = None,
        executor: CellExecutor | None = None,
    ) -> None:
        self.settings = settings
        files = RunFiles(settings.runs_dir)
        self.store: RunStore = Stores([store, files]) if store is not None else files
        self.bus = EventBus(self.store)
        self._executor = executor or ThreadExecutor()
        self._hosts: list[LibvirtHost] = []
        self._leases = SlotLeases(settings.state_dir / "leases")
        self._pool: HostPool | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> ReapReport:
        """Connect every usable host, prepare its network and pool, sweep what killed runs left."""
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        problems, connected = [], []
        for config in self.settings.hosts:
            host = LibvirtHost(config)
            try:
                host.connect()
                host.ensure_network(
                    self.settings.network_name, self.settings.network_bridge, self.settings.network_cidr
                )
                host.ensure_pool(self.settings.pool_dir(config))
                connected.append(host)
            except InfrastructureError as exc:
                host.close()
                problems.append(str(exc))
        if not connected:
            raise InfrastructureError("no libvirt host is usable:\n  " + "\n  ".join(problems))
        self._hosts = connected
        report = reap(self.settings.runs_dir, [(h, self.settings.pool_dir(h.config)) for h in connected])
        self._pool = HostPool(connected, self._leases)
        return report

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        for host in self._hosts:
            host.close()
        self._hosts = []
        self._leases.release_all()

    def __enter__(self) -> "Testbed":
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pool(self) -> HostPool:
        if self._pool is None:
            raise InfrastructureError("the testbed is not open")
        return self._pool

    # -- runs -------------------------------------------------------------------------------

    def start(
        self,
        prepared: PreparedGate,
        *,
        run_id: str | None = None,
        priority: int = 0,
        details: dict[str, object] | None = None,
    ) -> RunHandle:
        """Accept the run (its record exists from now on) and run it in the background."""
        run_id = run_id or new_run_id()
        run_dir = self.settings.runs_dir / run_id
        run_dir.mkdir(parents=True)
        run_dir.chmod(0o755)
        lock = RunLock(run_dir)
        work_dir = run_dir / "work"
        private_key, public_key = make_ssh_key(work_dir, f"endpoint-testbed-{run_id}")
        context = RunContext(
            run_id=run_id,
            settings=self.settings,
            candidate=prepared.candidate,
            images=prepared.images,
            run_dir=run_dir,
            work_dir=work_dir,
            playbooks_dir=PLAYBOOKS_DIR,
            ssh_private_key=private_key,
            ssh_public_key=public_key,
        )
        self.store.create_run(
            run_id,
            prepared.plan.as_dict(),
            evidence_dir=str(run_dir),
            priority=priority,
            matrix={
                "name": prepared.plan.matrix_name,
                "sha256": prepared.matrix_sha256,
                "source": prepared.matrix_source,
            },
            **(details or {}),
        )
        driver = RunDriver(
            run_id,
            prepared.plan,
            self.pool,
            {host.name: LibvirtCellHost(host, context) for host in self._hosts},
            publish=self.bus.publish,
            executor=self._executor,
            evidence_dir=str(run_dir),
            priority=priority,
            retries=prepared.spec.retries,
        )
        handle = RunHandle(run_id, run_dir, driver)

        def work() -> None:
            try:
                result = driver.run()
                self.store.finish_run(result)
            except BaseException as exc:  # noqa: BLE001 - the handle must always learn how it ended
                handle._finished(None, exc)
            else:
                handle._finished(result)
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
                lock.release()

        threading.Thread(target=work, name=f"run-{run_id}", daemon=True).start()
        return handle


def run_gate(
    settings: Settings,
    prepared: PreparedGate,
    publish: Callable[[RunEvent], None],
    run_id: str | None = None,
) -> RunResult:
    """One run on a testbed opened for it, waited for; ``publish`` hears every event in order."""
    with Testbed(settings) as testbed:
        subscription = testbed.bus.subscribe()

        def forward() -> None:
            for event in subscription:
                publish(event)

        pump = threading.Thread(target=forward, name="gate-events", daemon=True)
        pump.start()
        handle = testbed.start(prepared, run_id=run_id)
        try:
            result = _wait(handle)
        finally:
            subscription.close()
            pump.join(timeout=10)
    return result


def _wait(handle: RunHandle) -> RunResult:
    """Wait, waking often: Ctrl-C and SIGTERM (raised as KeyboardInterrupt) cancel the run."""
    while True:
        try:
            result = handle.wait(0.5)
        except KeyboardInterrupt:
            handle.cancel("interrupted by the user")
            continue
        if result is not None:
            return result


__all__ = [
    "LibvirtCellHost",
    "PreparedGate",
    "RunHandle",
    "Testbed",
    "new_run_id",
    "prepare_gate",
    "prepare_gate_from_text",
    "run_gate",
    "sha256_of_text",
]
