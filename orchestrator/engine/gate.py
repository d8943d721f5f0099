"""A gate run on this machine's configured libvirt hosts: plan, validate, execute, record.

``prepare_gate`` does everything that can fail because of bad input, before any VM exists;
``run_gate`` connects the hosts, runs the cells and writes run.json and events.jsonl.
"""

import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.candidate import Candidate, load_candidate
from orchestrator.config import Settings
from orchestrator.core.matrix import MatrixSpec, parse_matrix, plan_run
from orchestrator.core.plan import CellPlan, RunPlan
from orchestrator.core.records import RunEvent, RunResult
from orchestrator.engine.cell_driver import CellPorts, Post
from orchestrator.engine.run_driver import RunDriver
from orchestrator.errors import ConfigurationError, InfrastructureError
from orchestrator.guests import FAMILIES, RunContext
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


def prepare_gate(settings: Settings, matrix_path: Path, candidate_path: Path) -> PreparedGate:
    try:
        text = matrix_path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"matrix: cannot read {matrix_path}: {exc.strerror}") from exc
    spec = parse_matrix(text, source=str(matrix_path))
    candidate = load_candidate(candidate_path)
    images = ImageCatalog(settings.images_dir).usable()
    plan = plan_run(spec, {name: record.facts() for name, record in images.items()}, candidate.facts())
    return PreparedGate(spec, plan, candidate, images)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class LibvirtCellHost:
    """A libvirt host as the run driver sees it: room for cells, and a way to make their ports."""

    def __init__(self, host: LibvirtHost, run: RunContext) -> None:
        self.name = host.name
        self._host = host
        self._run = run
        self._domain_type = host.domain_type()
        self._max_cells = host.max_cells()

    def max_cells(self) -> int:
        return self._max_cells

    def free_memory_mib(self) -> int:
        return self._host.free_memory_mib()

    def make_ports(self, plan: CellPlan, post: Post) -> CellPorts:
        family = FAMILIES.get(plan.image.os_family)
        if family is None:
            raise InfrastructureError(f"no guest family plug-in for {plan.image.os_family}")
        return family(plan, post, self._host, self._run, self._domain_type)


class _EventLog:
    """events.jsonl beside run.json: the run's stream, persisted as it happens."""

    def __init__(self, path: Path, forward: Callable[[RunEvent], None]) -> None:
        self._path = path
        self._forward = forward
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        with self._lock, self._path.open("a") as stream:
            stream.write(json.dumps(event.as_dict()) + "\n")
        self._forward(event)


def run_gate(
    settings: Settings,
    prepared: PreparedGate,
    publish: Callable[[RunEvent], None],
    run_id: str | None = None,
    on_driver: Callable[[RunDriver], None] | None = None,
) -> RunResult:
    run_id = run_id or new_run_id()
    run_dir = settings.runs_dir / run_id
    work_dir = run_dir / "work"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o755)
    private_key, public_key = make_ssh_key(work_dir, f"endpoint-testbed-{run_id}")
    hosts = [LibvirtHost(config) for config in settings.hosts]
    started = time.time()
    try:
        connected = _connect_hosts(hosts, settings)
        context = RunContext(
            run_id=run_id,
            settings=settings,
            candidate=prepared.candidate,
            images=prepared.images,
            run_dir=run_dir,
            work_dir=work_dir,
            playbooks_dir=PLAYBOOKS_DIR,
            ssh_private_key=private_key,
            ssh_public_key=public_key,
        )
        driver = RunDriver(
            run_id,
            prepared.plan,
            [LibvirtCellHost(host, context) for host in connected],
            _EventLog(run_dir / "events.jsonl", publish),
        )
        if on_driver is not None:
            on_driver(driver)
        cells = driver.run()
    finally:
        for host in hosts:
            host.close()
        shutil.rmtree(work_dir, ignore_errors=True)
    verdict = RunDriver.verdict(cells)
    result = RunResult(
        run_id=run_id,
        matrix_name=prepared.plan.matrix_name,
        candidate_name=prepared.plan.candidate_name,
        candidate_version=prepared.plan.candidate_version,
        artifact_digests=prepared.plan.artifact_digests,
        verdict=verdict.verdict,
        summary=verdict.summary,
        cells=cells,
        evidence_dir=str(run_dir),
        started_at=started,
        finished_at=time.time(),
    )
    (run_dir / "run.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return result


def _connect_hosts(hosts: list[LibvirtHost], settings: Settings) -> list[LibvirtHost]:
    connected, problems = [], []
    for host in hosts:
        try:
            host.connect()
            host.ensure_network(settings.network_name, settings.network_bridge, settings.network_cidr)
            host.ensure_pool(settings.pool_dir(host.config))
            connected.append(host)
        except InfrastructureError as exc:
            problems.append(str(exc))
    if not connected:
        raise InfrastructureError("no libvirt host is usable:\n  " + "\n  ".join(problems))
    return connected
