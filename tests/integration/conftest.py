"""Real libvirt + QEMU guests: golden images (built once, cached by digest), the sample
candidates built against the images' kernel headers, and a check that nothing is left behind."""

import fcntl
import importlib.util
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.adapters.run_lock import run_is_alive
from orchestrator.config import Settings, load_settings
from orchestrator.core.records import CellResult, RunEvent, RunResult
from orchestrator.engine.gate import RunHandle, Testbed, prepare_gate, run_gate
from orchestrator.engine.reaper import run_id_of
from orchestrator.images.build import build_images
from orchestrator.images.catalog import ImageRecord
from orchestrator.images.definition import DebianImage, load_definitions
from tests.conftest import IMAGE_DEFINITION_DIRS, REPO_ROOT

GateRunner = Callable[..., tuple[RunResult, list[RunEvent]]]
RESULT_WAIT_S = 2400.0  # a batch on two slots shared with other workers; reached only if something hangs


def _load_sample_builder() -> ModuleType:
    path = REPO_ROOT / "samples" / "linux-sensor" / "build_candidate.py"
    spec = importlib.util.spec_from_file_location("build_candidate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def images(settings: Settings) -> dict[str, ImageRecord]:
    definitions = load_definitions(IMAGE_DEFINITION_DIRS)
    results = build_images(
        definitions,
        settings.images_dir,
        settings.debian_mirror,
        progress=lambda _: None,
        overlay_dirs=tuple(settings.pool_dir(host) for host in settings.hosts),
    )
    return {result.record.name: result.record for result in results}


@pytest.fixture(scope="session")
def kernels() -> list[str]:
    definitions = load_definitions(IMAGE_DEFINITION_DIRS)
    return [d.kernel for d in definitions.values() if isinstance(d, DebianImage)]


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A directory built by the first pytest-xdist worker that needs it and reused by the others of
    the session (kernel modules take a minute of CPU to build, and the CPU runs the guests too)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, shared by its workers
    out = root / f"shared-{name}"
    with (root / f"shared-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / ".built").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            build(out)
            (out / ".built").touch()
    return out


def _build_sensor(out: Path, content: str, kernels: list[str]) -> None:
    arguments = ["--out", str(out), "--content", content]
    for kernel in kernels:
        arguments += ["--kernel", kernel]
    assert _load_sample_builder().main(arguments) == 0


@pytest.fixture(scope="session")
def sample_candidates(tmp_path_factory: pytest.TempPathFactory, kernels: list[str]) -> dict[str, Path]:
    """The sample sensor, built for every image kernel, with good and with zero-filled content."""

    def build(root: Path) -> None:
        for content in ("good", "zero-filled"):
            _build_sensor(root / content, content, kernels)
        root.chmod(0o755)

    root = built_once(tmp_path_factory, "candidates", build)
    return {content: root / content for content in ("good", "zero-filled")}


@pytest.fixture(scope="session")
def candidate_without_kernel_n(tmp_path_factory: pytest.TempPathFactory, kernels: list[str]) -> Path:
    """The sample sensor built for every kernel but the first (N): its installer must refuse N."""

    def build(root: Path) -> None:
        _build_sensor(root / "candidate", "good", kernels[1:])

    return built_once(tmp_path_factory, "candidate-without-n", build) / "candidate"


def activity_outputs(evidence: Path) -> list[list[str]]:
    """What each run of a cell's activity workload printed, in order: the lines the playbook's
    "show" task put into ansible-runner's recorded events (playbooks/linux/run_activity.yml)."""
    runs = []
    with (evidence / "ansible-events.jsonl").open() as stream:
        for raw in stream:
            event = json.loads(raw)
            result = event.get("event_data", {}).get("res", {})
            shown = result.get("testbed_activity.stdout_lines") if isinstance(result, dict) else None
            if event.get("event") == "runner_on_ok" and shown:
                runs.append([line.strip() for line in shown])
    return runs


def find_leftovers(settings: Settings, run_id: str = "") -> tuple[list[str], list[Path]]:
    """Testbed domains (through libvirt) and a cell's files in the pool, on the filesystem or still
    listed by libvirt's pool (a file deleted behind libvirt's back stays listed there)."""
    host = LibvirtHost(settings.hosts[0])
    pool = settings.pool_dir(settings.hosts[0])
    host.connect()
    try:
        domains = [name for name in host.testbed_domains() if run_id in name]
        volumes = {pool / name for name in host.overlay_names(pool) if name.startswith("tb-")}
    finally:
        host.close()
    files = set(pool.glob("tb-*")) if pool.exists() else set()
    overlays = sorted(path for path in files | volumes if run_id in path.name)
    return domains, overlays


def _of_a_finished_run(settings: Settings, name: str) -> bool:
    """A domain or overlay no running gate accounts for. Under pytest-xdist other workers' runs are
    still going when this one ends; a run that is still going holds its run lock."""
    run_id = run_id_of(name)
    return run_id is None or not run_is_alive(settings.runs_dir / run_id)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(settings: Settings) -> Iterator[None]:
    """After the session: no testbed domain and no overlay of a finished run, per libvirt and per
    filesystem (the last worker to finish sees every run finished)."""
    yield
    domains, overlays = find_leftovers(settings)
    domains = [name for name in domains if _of_a_finished_run(settings, name)]
    overlays = [path for path in overlays if _of_a_finished_run(settings, path.name)]
    assert domains == [], f"testbed domains left behind: {domains}"
    assert overlays == [], f"overlays left behind: {overlays}"


@pytest.fixture
def gate(settings: Settings, images: dict[str, ImageRecord], tmp_path: Path) -> GateRunner:
    """Run a matrix (YAML text) against a candidate for real; check the run cleaned up after itself."""
    del images  # built and cataloged: prepare_gate reads the catalog

    def run(
        matrix_yaml: str, candidate: Path, observe: Callable[[RunEvent], None] | None = None
    ) -> tuple[RunResult, list[RunEvent]]:
        matrix = tmp_path / "matrix.yaml"
        matrix.write_text(matrix_yaml)
        events: list[RunEvent] = []
        lock = threading.Lock()

        def collect(event: RunEvent) -> None:
            with lock:
                events.append(event)
            if observe is not None:
                observe(event)

        result = run_gate(settings, prepare_gate(settings, matrix, candidate), collect)
        domains, overlays = find_leftovers(settings, result.run_id)
        assert domains == [], f"run {result.run_id} left domains: {domains}"
        assert overlays == [], f"run {result.run_id} left overlays: {overlays}"
        return result, events

    return run


class Batch:
    """Several runs started at once on one testbed, so the host's slots stay busy while the tests
    of a module read their results one by one (a cell takes minutes under TCG: waiting for each in
    turn would double the suite's time)."""

    def __init__(
        self, settings: Settings, testbed: Testbed, handles: dict[str, RunHandle], matrices: Path
    ) -> None:
        self._settings = settings
        self.testbed = testbed
        self.handles = handles
        self._matrices = matrices
        self._results: dict[str, RunResult] = {}

    def start(self, name: str, matrix_yaml: str, candidate: Path) -> None:
        matrix = self._matrices / f"{name}.yaml"
        matrix.write_text(matrix_yaml)
        self.handles[name] = self.testbed.start(prepare_gate(self._settings, matrix, candidate))

    def result(self, name: str) -> RunResult:
        if name not in self._results:
            result = self.handles[name].wait(RESULT_WAIT_S)
            assert result is not None, f"run {name} ({self.handles[name].run_id}) did not finish"
            domains, overlays = find_leftovers(self._settings, result.run_id)
            assert domains == [], f"run {result.run_id} left domains: {domains}"
            assert overlays == [], f"run {result.run_id} left overlays: {overlays}"
            self._results[name] = result
        return self._results[name]

    def cell(self, name: str) -> CellResult:
        (cell,) = [cell for cell in self.result(name).cells if cell.control_of is None]
        return cell


@pytest.fixture(scope="module")
def start_batch(
    settings: Settings, images: dict[str, ImageRecord], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[dict[str, tuple[str, Path]]], Batch]]:
    """Start runs (name -> (matrix YAML, candidate dir)) at once; each test reads its own result."""
    del images
    testbeds: list[tuple[Testbed, dict[str, RunHandle]]] = []

    def start(runs: dict[str, tuple[str, Path]]) -> Batch:
        testbed = Testbed(settings)
        testbed.open()
        handles: dict[str, RunHandle] = {}
        testbeds.append((testbed, handles))
        batch = Batch(settings, testbed, handles, tmp_path_factory.mktemp("matrices"))
        for name, (matrix_yaml, candidate) in runs.items():
            batch.start(name, matrix_yaml, candidate)
        return batch

    yield start
    for testbed, handles in testbeds:
        for handle in handles.values():  # a failed test must not leave its batch running
            if not handle.done:
                handle.cancel("the test module ended")
        for handle in handles.values():
            handle.wait(600)
        testbed.close()
