"""Real libvirt + QEMU guests: golden images (built once, cached by digest), the sample
candidates built against the images' kernel headers, and a check that nothing is left behind."""

import importlib.util
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.config import Settings, load_settings
from orchestrator.core.records import RunEvent, RunResult
from orchestrator.engine.gate import prepare_gate, run_gate
from orchestrator.images.build import build_images
from orchestrator.images.catalog import ImageRecord
from orchestrator.images.definition import DebianImage, load_definitions
from tests.conftest import IMAGE_DEFINITION_DIRS, REPO_ROOT

GateRunner = Callable[[str, Path], tuple[RunResult, list[RunEvent]]]


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


@pytest.fixture(scope="session")
def sample_candidates(tmp_path_factory: pytest.TempPathFactory, kernels: list[str]) -> dict[str, Path]:
    """The sample sensor, built for every image kernel, with good and with zero-filled content."""
    builder = _load_sample_builder()
    root = tmp_path_factory.mktemp("candidates")
    built = {}
    for content in ("good", "zero-filled"):
        out = root / content
        arguments = ["--out", str(out), "--content", content]
        for kernel in kernels:
            arguments += ["--kernel", kernel]
        assert builder.main(arguments) == 0
        built[content] = out
    root.chmod(0o755)
    return built


@pytest.fixture(scope="session")
def candidate_without_kernel_n(tmp_path_factory: pytest.TempPathFactory, kernels: list[str]) -> Path:
    """The sample sensor built for every kernel but the first (N): its installer must refuse N."""
    out = tmp_path_factory.mktemp("candidate-without-n") / "candidate"
    arguments = ["--out", str(out), "--content", "good"]
    for kernel in kernels[1:]:
        arguments += ["--kernel", kernel]
    assert _load_sample_builder().main(arguments) == 0
    return out


def find_leftovers(settings: Settings, run_id: str = "") -> tuple[list[str], list[Path]]:
    """Testbed domains (through libvirt) and overlays (on the filesystem) still present."""
    host = LibvirtHost(settings.hosts[0])
    host.connect()
    try:
        domains = [name for name in host.testbed_domains() if run_id in name]
    finally:
        host.close()
    pool = settings.pool_dir(settings.hosts[0])
    overlays = [path for path in pool.glob("tb-*") if run_id in path.name] if pool.exists() else []
    return domains, overlays


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(settings: Settings) -> Iterator[None]:
    """After the whole suite: no testbed domain and no overlay, per libvirt and per filesystem."""
    yield
    domains, overlays = find_leftovers(settings)
    assert domains == [], f"testbed domains left behind: {domains}"
    assert overlays == [], f"overlays left behind: {overlays}"


@pytest.fixture
def gate(settings: Settings, images: dict[str, ImageRecord], tmp_path: Path) -> GateRunner:
    """Run a matrix (YAML text) against a candidate for real; check the run cleaned up after itself."""
    del images  # built and cataloged: prepare_gate reads the catalog

    def run(matrix_yaml: str, candidate: Path) -> tuple[RunResult, list[RunEvent]]:
        matrix = tmp_path / "matrix.yaml"
        matrix.write_text(matrix_yaml)
        events: list[RunEvent] = []
        lock = threading.Lock()

        def collect(event: RunEvent) -> None:
            with lock:
                events.append(event)

        result = run_gate(settings, prepare_gate(settings, matrix, candidate), collect)
        domains, overlays = find_leftovers(settings, result.run_id)
        assert domains == [], f"run {result.run_id} left domains: {domains}"
        assert overlays == [], f"run {result.run_id} left overlays: {overlays}"
        return result, events

    return run
