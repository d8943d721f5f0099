"""The service on real guests: ``testbed serve`` (libvirt, QEMU) driven over REST and by
``testbed submit``, as CI and QA use it.

- ``testbed submit --wait`` returns 1 for the zero-filled candidate, with a JUnit file naming the crash;
- two runs submitted at once share the one host pool: never more cells at a time than it has slots;
- SIGKILL of the service mid-run, then a restart: nothing leaks (no domain, no overlay), the run is
  resumed and ends, and finished runs are untouched.

The service gets a database of its own and one slot on the local host (so that sharing shows);
golden images and evidence are the machine's usual ones. Matrices are the smallest that prove
each point: one cell, one reboot, short soak; the fast-boot image where the OS is not the point.
"""

import contextlib
import io
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli.submit_command import pack_candidate
from orchestrator.config import Settings
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunResult
from orchestrator.engine.reaper import YOUNG_S
from orchestrator.store import SqlRunStore, open_database
from tests.api.conftest import TESTBED, Service, create_token, running_service
from tests.api.runs_helpers import events_of, finish, follow_to_end, messages_until_end
from tests.conftest import REPO_ROOT
from tests.integration.conftest import find_leftovers

pytestmark = pytest.mark.integration

FAST_IMAGE = "debian12-kernel-n-fast"
ZERO_FILLED_MATRIX = f"""
name: service-zero-filled
images: [{FAST_IMAGE}]
reboots: 1
timeouts: {{ready: 420, stability: 5, install: 600, soak: 30}}
"""
HANG_MATRIX = """
name: service-pool-N
images: [control-hang]
reboots: 1
timeouts: {ready: 20, stability: 5}
"""
RESTART_MATRIX = f"""
name: service-restart
images: [{FAST_IMAGE}]
reboots: 1
timeouts: {{ready: 420, stability: 5, install: 600, soak: 30}}
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    """The machine's state (images, runs, pool), a database of the service's own, one slot."""
    state = tmp_path_factory.mktemp("real-service")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TESTBED_")}
    environment.update(
        TESTBED_DATABASE_URL=f"sqlite:///{state / 'testbed.db'}",
        TESTBED_HOSTS=json.dumps([{"name": "local", "uri": "qemu:///system", "max_cells": 1}]),
    )
    return environment


@pytest.fixture(scope="module")
def tokens(environment) -> dict[str, str]:
    return {role: create_token(environment, f"it-{role}", role) for role in ("viewer", "submitter", "admin")}


@pytest.fixture
def serve(environment, tokens, tmp_path):
    """Starts ``testbed serve`` (again) on the same state; every start is stopped at the end."""

    def start() -> contextlib.AbstractContextManager[Service]:
        return running_service(
            "sqlite",
            tmp_path,
            environment["TESTBED_DATABASE_URL"],
            command=[TESTBED, "serve"],
            tokens=tokens,
            environment=environment,
        )

    return start


@pytest.fixture
def service(serve) -> Iterator[Service]:
    with serve() as running:
        yield running


def run_dir(settings: Settings, run_id: str) -> Path:
    return settings.runs_dir / run_id


def test_submit_wait_returns_1_for_the_zero_filled_candidate_with_a_junit_naming_the_crash(
    service, sample_candidates, settings, tmp_path
):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(ZERO_FILLED_MATRIX)
    junit = tmp_path / "report.xml"

    done = subprocess.run(
        [
            TESTBED,
            "submit",
            "--server",
            service.base_url,
            "--token",
            service.tokens["submitter"],
            "--candidate",
            str(sample_candidates["zero-filled"]),
            "--matrix",
            str(matrix),
            "--wait",
            "--junit",
            str(junit),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=2400,  # the run may wait long for a slot while other workers' cells run
    )

    assert done.returncode == 1, done.stderr[-3000:]
    (case,) = ET.parse(junit).getroot().iter("testcase")
    failure = case.find("failure")
    assert failure is not None, ET.tostring(case)
    assert failure.get("type") == "crashed"
    assert "[testbed_sensor]" in failure.get("message")
    assert failure.get("message").startswith(
        ("BUG: kernel NULL pointer dereference", "general protection fault")
    )
    run_id = ET.parse(junit).getroot().find("properties/property[@name='run_id']").get("value")
    domains, overlays = find_leftovers(settings, run_id)
    assert (domains, overlays) == ([], [])


def test_two_runs_submitted_at_once_share_the_host_pool(service, sample_candidates, settings):
    with service.client("submitter") as client:
        upload = client.post(
            "/api/v1/candidates",
            files={"bundle": ("c.tar.gz", _bundle(sample_candidates["good"]), "application/gzip")},
        )
        runs = [
            client.post(
                "/api/v1/runs",
                json={"candidate_id": upload.json()["id"], "matrix": HANG_MATRIX.replace("-N", f"-{n}")},
            ).json()
            for n in (1, 2)
        ]
        events = [event for run in runs for event in events_of(follow_to_end(client, run["id"]))]
        finished = [client.get(f"/api/v1/runs/{run['id']}").json() for run in runs]

    assert [(run["status"], run["cells"][0]["state"]) for run in finished] == [("finished", "done")] * 2
    moments = sorted(
        (event["at"], 1 if event["state"] == "provisioning" else -1, event["run_id"])
        for event in events
        if event["kind"] == "cell_changed" and event["state"] in ("provisioning", "done")
    )
    busy, peak = 0, 0
    for _, change, _ in moments:
        busy += change
        peak = max(peak, busy)
    assert len(moments) == 4
    assert peak == 1  # one slot: the second run's cell waited for the first one's to end
    assert moments[1][1] == -1 and moments[0][2] == moments[1][2]  # the first started cell ended first
    for run in runs:
        assert find_leftovers(settings, run["id"]) == ([], [])


def test_a_service_killed_mid_run_leaks_nothing_and_its_run_ends_after_the_restart(
    serve, sample_candidates, settings
):
    with serve() as first, first.client("submitter") as client:
        earlier = _finished_run_in_store(first)
        before = client.get(f"/api/v1/runs/{earlier}").json()
        upload = client.post(
            "/api/v1/candidates",
            files={"bundle": ("c.tar.gz", _bundle(sample_candidates["good"]), "application/gzip")},
        )
        run = client.post(
            "/api/v1/runs", json={"candidate_id": upload.json()["id"], "matrix": RESTART_MATRIX}
        ).json()
        created = Path(run_dir(settings, run["id"])).stat().st_mtime
        # Kill once the run is older than the reaper's grace for young runs, with its guest up:
        # the first event after that moment with the cell past provisioning (it may wait for a
        # slot first, longer than one stream lives; then it boots, installs, reboots: events keep
        # coming).
        for message in messages_until_end(client, run["id"]):
            if message.event != "cell_changed":
                continue
            change = json.loads(message.data)
            if change["at"] > created + YOUNG_S + 2 and change["state"] not in ("pending", "provisioning"):
                break
        domains_before_kill, _ = find_leftovers(settings, run["id"])
        assert first.process is not None
        first.process.kill()
        first.process.wait()

    with serve() as second, second.client("viewer") as client:
        # The restart has swept the killed attempt's domain and overlay before resuming.
        domains_at_restart, overlays_at_restart = find_leftovers(settings, run["id"])
        ended = finish(client, run["id"])
        after = client.get(f"/api/v1/runs/{earlier}").json()
        everything = events_of(follow_to_end(client, run["id"]))

    assert domains_before_kill == [f"tb-{run['id']}-{FAST_IMAGE}"]
    assert f"tb-{run['id']}-{FAST_IMAGE}" not in domains_at_restart
    assert not any(path.name == f"tb-{run['id']}-{FAST_IMAGE}.qcow2" for path in overlays_at_restart)
    (cell,) = ended["cells"]
    assert ended["verdict"] in ("passed", "inconclusive"), ended["summary"]
    assert (cell["attempt"], cell["outcome"]) in ((2, "passed"), (2, "infra_error")), cell
    assert [e["sequence"] for e in everything] == list(range(1, len(everything) + 1))
    assert len([e for e in everything if e["kind"] == "run_started"]) == 2
    assert after == before  # a finished run is never touched
    assert find_leftovers(settings, run["id"]) == ([], [])
    run_json = json.loads((run_dir(settings, run["id"]) / "run.json").read_text())
    assert (run_json["status"], run_json["verdict"]) == ("finished", ended["verdict"])


def _bundle(candidate: Path) -> bytes:
    buffer = io.BytesIO()
    pack_candidate(candidate, buffer)
    return buffer.getvalue()


def _finished_run_in_store(service: Service) -> str:
    """A run that finished earlier (as a CLI run on this machine leaves one in the store)."""
    database = open_database(service.database_url)
    try:
        store = SqlRunStore(database)
        run_id = f"earlier-{os.getpid()}"
        store.create_run(
            run_id,
            {"matrix_name": "earlier", "cells": [{"cell_id": "c", "image": {"name": "debian12-kernel-n"}}]},
            candidate_id=None,
            matrix_id=None,
            priority=0,
            submitted_by="ci",
            evidence_dir="/nonexistent/earlier",
        )
        store.finish_run(
            RunResult(
                run_id,
                "earlier",
                "sensor",
                "1",
                {},
                RunVerdict.PASSED,
                "all 1 cell(s) passed",
                [CellResult("c", "debian12-kernel-n", "k", "local", CellOutcome.PASSED, "ok")],
                "/nonexistent/earlier",
                1.0,
                2.0,
            )
        )
    finally:
        database.close()
    return run_id
