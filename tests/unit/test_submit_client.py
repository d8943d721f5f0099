"""``testbed submit``'s client side without a server: the bundle it packs, how HTTP answers become
exit codes, following a stream across a dropped connection, and the result read back for JUnit."""

import io
import json
import tarfile
from collections.abc import Iterator

import httpx
import pytest

from api.cli.junit import junit_xml
from api.cli.submit_command import ServiceClient, pack_candidate, run_result_from
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.errors import ConfigurationError, InfrastructureError
from tests.api.bundles import candidate_files

pytestmark = pytest.mark.unit


@pytest.fixture
def candidate(tmp_path):
    directory = tmp_path / "candidate"
    for name, data in candidate_files().items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    (directory / "notes.txt").write_text("not listed in the manifest: not sent\n")
    return directory


def test_the_bundle_holds_the_manifest_and_the_listed_artifacts_only(candidate):
    buffer = io.BytesIO()

    described = pack_candidate(candidate, buffer)

    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r:gz") as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert set(members) == {"candidate.yaml", "pkg/sensor-linux.tar.gz", "content/C-291.bin"}
        assert all(m.isfile() and m.mode == 0o644 and m.uid == 0 for m in members.values())
        assert archive.extractfile("content/C-291.bin").read() == candidate_files()["content/C-291.bin"]
    assert described == "sensor 7.1.0"


def test_a_signature_beside_the_manifest_travels_with_it(candidate):
    (candidate / "candidate.yaml.dsse").write_text("{}")
    buffer = io.BytesIO()

    pack_candidate(candidate, buffer)

    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r:gz") as archive:
        assert "candidate.yaml.dsse" in archive.getnames()


def test_a_candidate_whose_files_do_not_match_is_bad_input_before_anything_is_sent(candidate):
    (candidate / "pkg" / "sensor-linux.tar.gz").write_bytes(b"rebuilt after signing")

    with pytest.raises(ConfigurationError, match="sha256"):
        pack_candidate(candidate, io.BytesIO())


def client_answering(handler) -> ServiceClient:
    return ServiceClient(
        "http://testbed.example/", "tbt_x", transport=httpx.MockTransport(handler), retry_delay_s=0
    )


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (
            422,
            {
                "message": "the run was refused",
                "problems": [{"location": "body", "field": "matrix_id", "message": "no such"}],
            },
            ConfigurationError,
            ["422", "body.matrix_id: no such"],
        ),
        (
            403,
            {"message": "this needs the submitter role", "problems": []},
            ConfigurationError,
            ["403", "submitter"],
        ),
        (
            503,
            {"message": "the testbed cannot run anything now", "problems": []},
            InfrastructureError,
            ["503"],
        ),
        (502, None, InfrastructureError, ["502"]),
    ],
)
def test_answers_become_the_testbeds_own_errors(status, body, error, words):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer tbt_x"
        return (
            httpx.Response(status, json=body)
            if body is not None
            else httpx.Response(status, text="<html>bad gateway</html>")
        )

    with pytest.raises(error) as raised:
        client_answering(handler).run("r")

    assert all(word in str(raised.value) for word in words)


def test_an_unreachable_server_is_infrastructure_trouble():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(InfrastructureError, match="cannot be reached"):
        client_answering(handler).run("r")


def sse(*sequences: int, end: bool = False) -> bytes:
    text = "retry: 2000\n\n"
    for sequence in sequences:
        event = RunEvent("r", sequence, 1.0, RunEventKind.CELL_NOTE, cell_id="n")
        text += f"id: {sequence}\nevent: cell_note\ndata: {json.dumps(event.as_dict())}\n\n"
    if end:
        text += 'event: end\ndata: {"status":"finished","verdict":"passed"}\n\n'
    return text.encode()


class Dropping(httpx.SyncByteStream):
    """A response body that breaks off after its first part, as a dropped connection does."""

    def __init__(self, first: bytes) -> None:
        self._first = first

    def __iter__(self) -> Iterator[bytes]:
        yield self._first
        raise httpx.ReadError("connection reset by peer")


def test_the_stream_is_followed_across_a_dropped_connection_each_event_once():
    asked_after = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked_after.append(request.headers["last-event-id"])
        if len(asked_after) == 1:
            return httpx.Response(200, stream=Dropping(sse(1, 2)))
        if len(asked_after) == 2:
            return httpx.Response(200, content=sse(3))  # the server ended the stream (its time limit)
        return httpx.Response(200, content=sse(4, end=True))

    events = list(client_answering(handler).events("r"))

    assert [event.sequence for event in events] == [1, 2, 3, 4]
    assert asked_after == ["0", "2", "3"]


def test_a_stream_that_stays_away_longer_than_the_budget_gives_up():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(InfrastructureError, match="lost the run's event stream"):
        list(client_answering(handler).events("r", budget_s=0))


def test_the_result_read_back_makes_the_same_junit_with_links_to_the_page():
    crashed = CellResult(
        "n",
        "debian12-kernel-n",
        "6.1.0-56-amd64",
        "local",
        CellOutcome.CRASHED,
        "panicked",
        crash={"title": "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"},
        evidence_dir="/var/lib/endpoint-testbed/runs/r/cells/n",
        started_at=10.0,
        finished_at=70.0,
    )
    original = RunResult(
        "r",
        "m",
        "sensor",
        "1.0",
        {"pkg": "a" * 64},
        RunVerdict.FAILED,
        "1 of 1 cell(s) failed: n",
        [crashed],
        "/var/lib/endpoint-testbed/runs/r",
        5.0,
        75.0,
    )

    read_back = run_result_from(json.loads(json.dumps(original.as_dict())), "http://testbed/runs/r")

    assert read_back.verdict is RunVerdict.FAILED
    assert read_back.cells[0].crash_title == crashed.crash_title
    assert read_back.cells[0].evidence_dir == "http://testbed/runs/r/cells/n"
    report = junit_xml(read_back)
    assert 'message="BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]"' in report
    assert "/var/lib/endpoint-testbed" not in report
