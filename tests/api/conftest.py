"""A live service per database: uvicorn in a subprocess on a free port, over HTTP.

The service is the production app with the simulated engine (``tests.api.simulated_app``: real run
machinery, simulated guests, no VM) over a catalog of simulated images; ``testbed serve`` itself,
with libvirt, is what the integration tests run. Each backend gets its own state directory and
database, and three tokens made with the real ``testbed tokens create``. PostgreSQL is Debian's
server, started here by ``initdb`` + ``pg_ctl``
in a temporary directory on a free port (as the ``postgres`` user when we are root); nothing
assumes a running server. Without the binaries the PostgreSQL half is skipped, saying why.
"""

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api.simulated_engine import write_image_catalog
from tests.conftest import REPO_ROOT

TESTBED = str(Path(sys.executable).with_name("testbed"))
SIMULATED_SERVICE = [sys.executable, "-m", "uvicorn", "--factory", "tests.api.simulated_app:create"]
UPLOAD_LIMIT_MIB = 1
MAX_MEMBERS = 40
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or in Debian's versioned directory (newest first)."""
    candidates = [Path(found).resolve().parent for found in [shutil.which("initdb")] if found]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


@dataclass(frozen=True)
class PostgresServer:
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        with psycopg.connect(
            f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as an unprivileged user."""
    if os.geteuid() != 0:
        return command
    user = "postgres" if _user_exists("postgres") else "nobody"
    return ["runuser", "-u", user, "--", *command]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
        )
    root = Path(tempfile.mkdtemp(prefix="testbed-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres" if _user_exists("postgres") else "nobody")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    port = free_port()
    environment = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "testbed",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        env=environment,
        cwd=root,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options]
    subprocess.run(
        _as_server_user([*start, "-w", "-t", "60", "start"]),
        check=True,
        capture_output=True,
        env=environment,
        cwd=root,
    )
    try:
        yield PostgresServer(port=port, user="testbed")
    finally:
        stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_server_user(stop), check=False, capture_output=True, env=environment, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


# -- the service --------------------------------------------------------------------------------


@dataclass
class Service:
    """A running ``testbed serve`` and what the tests need to talk to it."""

    backend: str
    base_url: str
    state_dir: Path
    database_url: str
    tokens: dict[str, str]  # role -> secret
    log: Path
    process: "subprocess.Popen[str] | None" = None

    def client(self, role: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)

    @property
    def candidates_dir(self) -> Path:
        return self.state_dir / "candidates"


def service_environment(state_dir: Path, database_url: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TESTBED_")}
    environment.update(
        TESTBED_STATE_DIR=str(state_dir),
        TESTBED_DATABASE_URL=database_url,
        TESTBED_UPLOAD_LIMIT_MIB=str(UPLOAD_LIMIT_MIB),
        TESTBED_UPLOAD_MAX_MEMBERS=str(MAX_MEMBERS),
    )
    return environment


def create_token(environment: dict[str, str], name: str, role: str) -> str:
    made = subprocess.run(
        [TESTBED, "tokens", "create", "--name", name, "--role", role, "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
    )
    secret: str = json.loads(made.stdout)["secret"]
    return secret


class _LogPump:
    """Copies the server's output to a file and tells when uvicorn says it is up (or it died)."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(process, log), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str], log: Path) -> None:
        assert process.stdout is not None
        with log.open("w") as sink:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                if "Uvicorn running on" in line:  # printed once the socket listens
                    self.ready.set()
        self.ready.set()  # the process ended: whoever waits must not wait longer

    def join(self) -> None:
        self._thread.join(timeout=10)


@contextlib.contextmanager
def running_service(
    backend: str,
    state_dir: Path,
    database_url: str,
    *,
    command: list[str] | None = None,
    tokens: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
) -> Iterator[Service]:
    """A service on a free port until the block ends; ``command`` (e.g. ``testbed serve``) replaces
    the simulated one, ``tokens`` reuses tokens made earlier for the same state (a restart)."""
    environment = environment or service_environment(state_dir, database_url)
    if command is None:
        write_image_catalog(state_dir / "images")
    tokens = tokens or {
        role: create_token(environment, f"test-{role}", role) for role in ("viewer", "submitter", "admin")
    }
    port = free_port()
    log = state_dir / f"serve-{port}.log"
    process = subprocess.Popen(
        [*(command or SIMULATED_SERVICE), "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        env=environment,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pump = _LogPump(process, log)
    try:
        if not pump.ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            pytest.fail(f"testbed serve did not start ({backend}):\n{log.read_text()}")
        yield Service(backend, f"http://127.0.0.1:{port}", state_dir, database_url, tokens, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pump.join()
        if process.stdout is not None:
            process.stdout.close()
    output = log.read_text()
    if "Traceback" in output:
        pytest.fail(f"the service logged a traceback ({backend}):\n{output}")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The live service, once per database backend for the whole session."""
    backend = request.param
    state_dir = tmp_path_factory.mktemp(f"service-{backend}")
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"testbed_{state_dir.name.replace('-', '_')}")
    else:
        url = f"sqlite:///{state_dir / 'testbed.db'}"
    with running_service(backend, state_dir, url) as running:
        yield running


@pytest.fixture
def admin(service: Service) -> Iterator[httpx.Client]:
    with service.client("admin") as client:
        yield client


@pytest.fixture
def submitter(service: Service) -> Iterator[httpx.Client]:
    with service.client("submitter") as client:
        yield client


@pytest.fixture
def viewer(service: Service) -> Iterator[httpx.Client]:
    with service.client("viewer") as client:
        yield client


@pytest.fixture
def anonymous(service: Service) -> Iterator[httpx.Client]:
    with service.client(None) as client:
        yield client
