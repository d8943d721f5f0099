"""The gate on this machine's libvirt hosts: plan and validate, then run — blocking or not.

``prepare_gate`` does everything that can fail because of bad input, before any VM exists.
``Testbed`` is the long-lived side of one process (the CLI's single run, or the service's many):
connected hosts, the host pool, the event bus and the run store. ``Testbed.start`` returns a
``RunHandle`` at once (ansible-runner's ``run_async``); ``run_gate`` is the same call, waited for.
"""

import base64
import hashlib
import json
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.adapters.run_lock import RunLock
from orchestrator.adapters.slot_leases import SlotLeases
from orchestrator.attest import (
    Signer,
    TrustedKey,
    attest_run,
    load_signer,
    load_trusted_key,
    password_from_env,
    verify_signed_candidate,
)
from orchestrator.candidate import Candidate, load_candidate
from orchestrator.config import Settings
from orchestrator.core.matrix import MatrixSpec, parse_matrix, plan_run
from orchestrator.core.plan import CellPlan, RunPlan
from orchestrator.core.ports import CellPorts, Post
from orchestrator.core.records import CellResult, RunEvent, RunResult
from orchestrator.engine.event_bus import EventBus, RunStore
from orchestrator.engine.executor import CellExecutor, ThreadExecutor
from orchestrator.engine.host_pool import HostPool
from orchestrator.engine.reaper import ReapReport, reap, reap_run
from orchestrator.engine.run_driver import Resumption, RunDriver
from orchestrator.engine.run_files import RunFiles, Stores
from orchestrator.errors import ConfigurationError, InfrastructureError, TestbedError
from orchestrator.guests import ACTIVITY_FAMILIES, FAMILIES, DomainCell, RunContext
from orchestrator.guests.run_context import make_ssh_key
from orchestrator.images.catalog import ImageCatalog, ImageRecord
from orchestrator.products import Product, load_products

PLAYBOOKS_DIR = Path(__file__).resolve().parents[2] / "playbooks"
MAX_RESUMES = 1
"""How often a run is picked up again after its process died before its leftover cells give up."""

_log = logging.getLogger(__name__)


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
    products: dict[str, Product] = field(default_factory=dict)
    activity_script: bytes | None = None


def prepare_gate(settings: Settings, matrix_path: Path, candidate_path: Path) -> PreparedGate:
    try:
        data = matrix_path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"matrix: cannot read {matrix_path}: {exc.strerror}") from exc
    return prepare_gate_from_bytes(
        settings, data, candidate_path, source=str(matrix_path.resolve()), base_dir=matrix_path.parent
    )


def prepare_gate_from_bytes(
    settings: Settings, data: bytes, candidate_path: Path, source: str, base_dir: Path | None = None
) -> PreparedGate:
    """Validate everything a run needs; the matrix is hashed as the bytes it came as (the digest a
    publish step checks with sha256sum)."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{source}: the matrix is not UTF-8 text: {exc}") from exc
    spec = parse_matrix(text, source=source)
    if settings.require_signed_candidates or spec.require_signed_candidate:
        candidate = verify_signed_candidate(candidate_path, _trusted_release_keys(settings))
    else:
        candidate = load_candidate(candidate_path)
    images = ImageCatalog(settings.images_dir).usable()
    products = load_products(settings.products_path) if any(spec.coinstalled) else {}
    activity = _activity_script(spec, base_dir, source)
    plan = plan_run(
        spec,
        {name: record.facts() for name, record in images.items()},
        candidate.facts(),
        frozenset(products),
        ACTIVITY_FAMILIES,
    )
    digest = hashlib.sha256(data).hexdigest()
    plan = replace(
        plan,
        matrix_sha256=digest,
        matrix_source=source,
        cells=tuple(
            replace(cell, content_digests=_content_digests(candidate, cell, plan.variant_seed))
            for cell in plan.cells
        ),
    )
    return PreparedGate(spec, plan, candidate, images, text, digest, source, products, activity)


def _activity_script(spec: MatrixSpec, base_dir: Path | None, source: str) -> bytes | None:
    if spec.activity is None:
        return None
    if spec.activity.run is not None:
        return spec.activity.run.encode()
    script = Path(spec.activity.script or "")
    if not script.is_absolute():
        if base_dir is None:
            raise ConfigurationError(
                f"{source}: activity.script: a relative path needs a matrix file to be relative to; "
                "give the workload inline (activity.run) or an absolute path"
            )
        script = base_dir / script
    try:
        return script.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{source}: activity.script: cannot read {script}: {exc.strerror}") from exc


def _content_digests(candidate: Candidate, cell: CellPlan, seed: int) -> tuple[tuple[str, str], ...]:
    return tuple(
        (
            artifact.name,
            hashlib.sha256(candidate.content_bytes(artifact, cell.content_variant, seed)).hexdigest(),
        )
        for artifact in candidate.content_files()
    )


def family_needs_kvm(cell: CellPlan) -> bool:
    """Whether the cell's guest family runs only with hardware virtualization (Windows)."""
    return bool(getattr(FAMILIES.get(cell.image.os_family), "needs_kvm", False))


def kvm_refusals(plan: RunPlan, host_types: Mapping[str, str], host_uris: Mapping[str, str]) -> list[str]:
    """Why cells cannot run on these hosts: an image whose family needs KVM (Windows) where no
    host offers it. Checked before a run is accepted, so nothing is started (pure)."""
    if any(domain_type == "kvm" for domain_type in host_types.values()):
        return []
    hosts = ", ".join(f"{name} ({host_uris.get(name, '?')})" for name in host_types) or "none"
    needing = {cell.image.name: cell.image.os_family for cell in plan.cells if family_needs_kvm(cell)}
    return [
        f"image {image}: {family} guests need a KVM host, and the configured hosts offer only "
        f"emulation (TCG): {hosts}"
        for image, family in sorted(needing.items())
    ]


def refuse_unrunnable(prepared: PreparedGate, hosts: Sequence[LibvirtHost]) -> None:
    """``ConfigurationError`` naming the images no host can run (see ``kvm_refusals``)."""
    problems = kvm_refusals(
        prepared.plan,
        {host.name: host.domain_type() for host in hosts},
        {host.name: host.config.uri for host in hosts},
    )
    if problems:
        raise ConfigurationError("; ".join(problems))


def check_hosts_can_run(settings: Settings, prepared: PreparedGate) -> None:
    """The same refusal before any testbed is opened (the CLI says it before anything else).

    Only a remote host whose accelerator is not configured must be asked (a connection); a host
    that cannot be reached is left for the run to find out about.
    """
    if not kvm_refusals(prepared.plan, {}, {}):
        return  # no cell needs KVM
    hosts = [LibvirtHost(config) for config in settings.hosts]
    reachable = []
    try:
        for host in hosts:
            if not host.config.is_local and host.config.accel == "auto":
                try:
                    host.connect()
                except InfrastructureError:
                    continue
            reachable.append(host)
        if reachable:
            refuse_unrunnable(prepared, reachable)
    finally:
        for host in hosts:
            host.close()


def _trusted_release_keys(settings: Settings) -> list[TrustedKey]:
    if not settings.trusted_release_keys:
        raise ConfigurationError(
            "signed candidates are required, but no trusted_release_keys are configured in the settings"
        )
    return [load_trusted_key(path) for path in settings.trusted_release_keys]


def _load_signer(settings: Settings) -> Signer | None:
    """The verdict signer, loaded once at start: a wrong key or password is bad input (exit 3)."""
    if settings.signing_key is None:
        return None
    return load_signer(settings.signing_key, password_from_env(settings.signing_key_password_env))


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
        self._files = files = RunFiles(settings.runs_dir)
        self.store: RunStore = Stores([store, files]) if store is not None else files
        self.bus = EventBus(self.store)
        self._executor = executor or ThreadExecutor()
        self._hosts: list[LibvirtHost] = []
        self._leases = SlotLeases(settings.state_dir / "leases")
        self._pool: HostPool | None = None
        self._signer = _load_signer(settings)

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
        candidate_id: str | None = None,
        matrix_id: str | None = None,
        submitted_by: str | None = None,
    ) -> RunHandle:
        """Accept the run (its record exists from now on) and run it in the background.

        A plan some cell of which no host can run (a Windows image, no KVM host) is refused first
        with ``ConfigurationError``: no record, no domain."""
        self.refuse_unrunnable(prepared)
        run_id = run_id or new_run_id()
        run_dir = self.settings.runs_dir / run_id
        run_dir.mkdir(parents=True)
        run_dir.chmod(0o755)
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
        write_run_plan(run_dir, prepared)
        return self._launch(prepared, run_id, run_dir, lock, priority=priority, resumed=None)

    def refuse_unrunnable(self, prepared: PreparedGate) -> None:
        refuse_unrunnable(prepared, self._hosts)

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
        """Pick up a run whose process died: finished cells stand, interrupted ones run again as a
        new attempt on a fresh clone — once; a run interrupted again ends its cells infra_error."""
        run_dir = self.settings.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)
        # The reaper spares a run whose directory changed in the last minute (its process may not
        # hold its lock yet); this one is ours now, and what its dead process left must go.
        reap_run(run_id, [(host, self.settings.pool_dir(host.config)) for host in self._hosts])
        self._files.reopen_run(run_id)
        give_up = f"the run was interrupted {resumes + 1} times" if resumes >= MAX_RESUMES else ""
        resumption = Resumption(tuple(finished), last_sequence, dict(attempts), give_up)
        return self._launch(prepared, run_id, run_dir, lock, priority=priority, resumed=resumption)

    def _launch(
        self,
        prepared: PreparedGate,
        run_id: str,
        run_dir: Path,
        lock: RunLock,
        *,
        priority: int,
        resumed: Resumption | None,
    ) -> RunHandle:
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
            products=prepared.products,
            activity_script=_write_activity(work_dir, prepared.activity_script),
            variant_seed=prepared.plan.variant_seed,
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
            resumed=resumed,
            needs_kvm=family_needs_kvm,
        )
        handle = RunHandle(run_id, run_dir, driver)

        def work() -> None:
            try:
                result = driver.run()
                self.store.finish_run(result)  # the event stream's "end" waits for this
                self._attest(run_dir, prepared)
            except BaseException as exc:  # noqa: BLE001 - the handle must always learn how it ended
                handle._finished(None, exc)
            else:
                handle._finished(result)
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
                lock.release()

        threading.Thread(target=work, name=f"run-{run_id}", daemon=True).start()
        return handle

    def _attest(self, run_dir: Path, prepared: PreparedGate) -> None:
        """Sign the verdict when a key is configured; a failure to sign never changes the verdict."""
        if self._signer is None:
            return
        try:
            attest_run(
                run_dir,
                self._signer,
                verifier_id=self.settings.verifier_id,
                matrix_digest=prepared.matrix_sha256,
                matrix_uri=_matrix_uri(prepared.matrix_source),
                image_digests={name: record.digest for name, record in prepared.images.items()},
            )
        except (TestbedError, OSError) as exc:
            (run_dir / "attestations").mkdir(exist_ok=True)
            (run_dir / "attestations" / "not-signed.txt").write_text(f"the verdict was not signed: {exc}\n")


RUN_PLAN_FILE = "plan.json"


def write_run_plan(run_dir: Path, prepared: PreparedGate) -> None:
    """What ``testbed repro`` needs to boot a cell again, kept with the evidence: every cell's plan,
    the images by digest, where the candidate was read from (its digests are in the plan), and the
    activity workload's bytes."""
    plan = {
        "plan": prepared.plan.as_dict(),
        "candidate_dir": str(prepared.candidate.root),
        "images": {
            cell.image.name: {"digest": cell.image.digest, "disk": str(prepared.images[cell.image.name].disk)}
            for cell in prepared.plan.cells
            if cell.image.name in prepared.images
        },
        "activity_script_b64": (
            base64.b64encode(prepared.activity_script).decode() if prepared.activity_script else None
        ),
    }
    (run_dir / RUN_PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")


def _write_activity(work_dir: Path, script: bytes | None) -> Path | None:
    if script is None:
        return None
    path = work_dir / "activity.sh"
    path.write_bytes(script)
    return path


def _matrix_uri(source: str) -> str:
    return Path(source).as_uri() if source.startswith("/") else source


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
                try:
                    publish(event)
                except Exception:  # noqa: BLE001 - a display's bug must not silence the run
                    _log.exception("the run's event listener failed on event %s", event.sequence)

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
    "check_hosts_can_run",
    "kvm_refusals",
    "new_run_id",
    "prepare_gate",
    "prepare_gate_from_bytes",
    "refuse_unrunnable",
    "run_gate",
    "write_run_plan",
]
