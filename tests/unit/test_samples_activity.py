"""The Linux activity workload: it does each thing it says, reports what it did, and fails loudly.

It runs here as it runs in a guest, against a local TCP service on a free port (ACTIVITY_TCP_PORT)
standing in for the guest's sshd, with /bin/sh (dash on Debian: POSIX, no bashisms).
"""

import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "samples" / "activity" / "linux-activity.sh"


@pytest.fixture
def ssh_like_port() -> Iterator[int]:
    """A listener that greets like sshd and, like sshd, keeps the connection open for the client's
    own banner."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    connections: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            connections.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in connections:
        connection.close()
    server.close()


def run(tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(SCRIPT)],
        env={**os.environ, "ACTIVITY_TCP_PORT": str(port), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_workload_does_what_users_do_and_says_so(tmp_path, ssh_like_port):
    result = run(tmp_path, ssh_like_port)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [re.sub(r"/\S*activity\.\w+", "<work>", line) for line in lines] == [
        "activity: files: wrote, appended, read back, renamed, listed and deleted files in <work>",
        "activity: processes: ran a pipeline (sh, seq, sort, head, wc)",
        "activity: processes: starting <work>/testbed-trigger",
        lines[3],
        f"activity: network: connected to 127.0.0.1:{ssh_like_port}, banner SSH-2.0-OpenSSH_9.2p1 Debian-2",
        "activity: named pipe: a writer and a reader exchanged a line through <work>/pipe",
        "activity: done",
    ]
    assert re.fullmatch(r"activity: processes: testbed-trigger: pid \d+ ran", lines[3])
    assert list(tmp_path.iterdir()) == []  # the work directory is removed


def test_a_failed_action_is_named_and_fails_the_workload(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        closed_port = placeholder.getsockname()[1]  # nothing listens once the block ends

    result = run(tmp_path, closed_port)

    assert result.returncode == 1
    assert (
        f"activity: FAILED: network: no SSH banner from 127.0.0.1:{closed_port} (client: bash)"
        in result.stdout
    )
    assert result.stdout.splitlines()[-1] == "activity: done with 1 failure(s)"
