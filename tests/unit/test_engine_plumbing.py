"""The engine's plumbing without a VM: the event bus, run files, run locks, the reaper, slot
leases, the Linux probe script, the guest network's definitions."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.adapters.libvirt_host import OwnedDomain
from orchestrator.adapters.libvirt_network import (
    GUEST_FILTER,
    guest_filter_xml,
    network_is_contained,
    network_xml,
)
from orchestrator.adapters.run_lock import RunLock, run_is_alive
from orchestrator.core.outcomes import CellOutcome, RunVerdict
from orchestrator.core.records import CellResult, RunEvent, RunEventKind, RunResult
from orchestrator.engine.event_bus import EventBus
from orchestrator.engine.reaper import reap, reap_run, run_id_of
from orchestrator.engine.run_files import RunFiles, Stores
from orchestrator.guests.linux.probe_script import (
    health_command_line,
    parse_facts,
    parse_health,
    probe_script,
)
from tests.unit.test_domain_xml import assert_valid

pytestmark = pytest.mark.unit


def event(sequence: int, run_id: str = "run-1") -> RunEvent:
    return RunEvent(run_id=run_id, sequence=sequence, at=float(sequence), kind=RunEventKind.CELL_NOTE)


class History:
    """A store that keeps events and can replay them (like the SQL store)."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def create_run(self, run_id, plan, **details) -> None:
        self.events.clear()

    def append_event(self, event: RunEvent) -> None:
        self.events.append(event)

    def finish_run(self, result) -> None:
        pass

    def events_after(self, run_id: str, after_sequence: int, limit: int = 1000) -> list[RunEvent]:
        return [e for e in self.events if e.run_id == run_id and e.sequence > after_sequence][:limit]


# -- the event bus ----------------------------------------------------------------------------------


def test_every_event_is_stored_before_any_subscriber_sees_it():
    seen_in_store_first = []
    store = History()
    bus = EventBus(store)
    subscription = bus.subscribe("run-1")
    original = subscription.offer

    def offer(e):
        seen_in_store_first.append(e in store.events)
        return original(e)

    subscription.offer = offer
    for sequence in (1, 2, 3):
        bus.publish(event(sequence))
    assert seen_in_store_first == [True, True, True]
    assert [subscription.get(0).sequence for _ in range(3)] == [1, 2, 3]


def test_a_slow_subscriber_is_cut_off_and_never_blocks_publishing():
    bus = EventBus(History(), queue_size=2)
    slow = bus.subscribe("run-1")
    started = time.monotonic()
    for sequence in range(1, 50):
        bus.publish(event(sequence))
    assert time.monotonic() - started < 1.0
    assert slow.overflowed
    assert list(slow) == [event(1), event(2)]  # what it had, then the end: it must catch up from the store


def test_a_late_subscriber_replays_what_it_missed_then_goes_live_without_duplicates():
    store = History()
    bus = EventBus(store)
    for sequence in (1, 2, 3):
        bus.publish(event(sequence))
    late = bus.subscribe("run-1", after=1)
    bus.publish(event(3))  # a live copy of one it also replays
    bus.publish(event(4))
    got = []
    while (e := late.get(0)) is not None:
        got.append(e.sequence)
    assert got == [2, 3, 4]


def test_subscribers_of_one_run_hear_only_that_run():
    bus = EventBus(History())
    mine, everything = bus.subscribe("run-1"), bus.subscribe()
    bus.publish(event(1, "run-1"))
    bus.publish(event(1, "run-2"))
    assert [e.run_id for e in iter(lambda: mine.get(0), None)] == ["run-1"]
    assert [e.run_id for e in iter(lambda: everything.get(0), None)] == ["run-1", "run-2"]


# -- run files and locks -------------------------------------------------------------------------


def result(run_id: str, evidence_dir: Path) -> RunResult:
    cell = CellResult("c1", "debian12-kernel-n", "6.1.0-56-amd64", "local", CellOutcome.PASSED, "fine")
    return RunResult(run_id, "m", "sensor", "1.0.0", {"a": "0" * 64}, RunVerdict.PASSED, "all", [cell],
                     str(evidence_dir), 1.0, 2.0)  # fmt: skip


def test_run_json_exists_from_acceptance_and_ends_with_the_verdict(tmp_path):
    files = RunFiles(tmp_path)
    (tmp_path / "run-1").mkdir()
    files.create_run(
        "run-1", {"cells": []}, candidate_id=None, matrix_id=None, priority=0, submitted_by=None,
        evidence_dir=str(tmp_path / "run-1"),
    )  # fmt: skip
    assert json.loads((tmp_path / "run-1" / "run.json").read_text())["status"] == "running"
    Stores([files]).append_event(event(1))
    assert json.loads((tmp_path / "run-1" / "events.jsonl").read_text())["sequence"] == 1
    files.finish_run(result("run-1", tmp_path / "run-1"))
    finished = json.loads((tmp_path / "run-1" / "run.json").read_text())
    assert (finished["status"], finished["verdict"]) == ("finished", "passed")
    assert not list((tmp_path / "run-1").glob("*.tmp"))


def test_a_resumed_run_is_running_again_in_its_run_json(tmp_path):
    """The reaper closed it as interrupted while the service was down; the restart resumes it."""
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    closed = {"run_id": "r", "plan": {"cells": []}, "status": "finished", "verdict": "inconclusive",
              "summary": "interrupted", "finished_at": 2.0, "interrupted": True}  # fmt: skip
    (runs / "r" / "run.json").write_text(json.dumps(closed))
    RunFiles(runs).reopen_run("r")
    reopened = json.loads((runs / "r" / "run.json").read_text())
    assert reopened["status"] == "running" and reopened["plan"] == {"cells": []}
    assert not {"verdict", "summary", "finished_at", "interrupted"} & reopened.keys()
    RunFiles(runs).reopen_run("missing")  # nothing to reopen: no error, nothing written
    assert not (runs / "missing").exists()


def test_a_run_lock_is_alive_only_while_its_process_holds_it(tmp_path):
    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    assert not run_is_alive(run_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from orchestrator.adapters.run_lock import RunLock; "
         f"RunLock(__import__('pathlib').Path({str(run_dir)!r})); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert run_is_alive(run_dir)
    finally:
        holder.kill()  # as SIGKILL would: the kernel drops the lock with the process
        holder.communicate()
    assert not run_is_alive(run_dir)
    lock = RunLock(run_dir)
    assert run_is_alive(run_dir)
    lock.release()


# -- the reaper --------------------------------------------------------------------------------------


class LeftoverHost:
    """What a host shows after a killed run: its domain and overlay still there."""

    name = "h1"

    def __init__(self, domains: list[OwnedDomain], overlays: list[str]) -> None:
        self.domains = domains
        self.overlays = overlays
        self.removed: list[str] = []
        self.deleted: list[str] = []

    def owned_domains(self):
        return [d for d in self.domains if d.name not in self.removed]

    def remove_domain(self, name):
        self.removed.append(name)

    def refresh_pool(self, path):
        pass

    def overlay_names(self, path):
        return [o for o in self.overlays if o not in self.deleted]

    def delete_overlay(self, path, name):
        self.deleted.append(name)


def test_a_resumed_run_sweeps_its_own_earlier_attempts_however_young():
    """A restarted service resumes a run whose directory changed seconds before the kill: the
    general reaper spares it (young), the resumption must not (CI: an overlay left behind)."""
    run, other = "20261126-010000-aaaa", "20261126-010000-bbbb"
    host = LeftoverHost(
        [OwnedDomain(f"tb-{run}-c1", run, True), OwnedDomain(f"tb-{other}-c1", other, True)],
        [f"tb-{run}-c1.qcow2", f"tb-{run}-c1.vmlinuz", f"tb-{other}-c1.qcow2", "base.qcow2"],
    )
    report = reap_run(run, [(host, Path("/pool"))])
    assert host.removed == [f"tb-{run}-c1"]
    assert sorted(host.deleted) == [f"tb-{run}-c1.qcow2", f"tb-{run}-c1.vmlinuz"]
    assert report.domains == [f"tb-{run}-c1"] and not report.problems
    names = (f"tb-{run}-c1.initrd", "base.qcow2", "tb-x-c1")
    assert [run_id_of(name) for name in names] == [run, None, None]


def test_the_reaper_sweeps_dead_runs_and_leaves_live_and_finished_ones(tmp_path):
    runs = tmp_path / "runs"
    dead, live, finished = "20261126-010000-aaaa", "20261126-010000-bbbb", "20261126-010000-cccc"
    for run_id in (dead, live, finished):
        (runs / run_id / "work").mkdir(parents=True)
    (runs / dead / "run.json").write_text(json.dumps({"run_id": dead, "status": "running"}))
    (runs / finished / "run.json").write_text(
        json.dumps({"run_id": finished, "status": "finished", "verdict": "passed"})
    )
    old = time.time() - 3600
    for run_id in (dead, live, finished):
        os.utime(runs / run_id, (old, old))
    lock = RunLock(runs / live)
    host = LeftoverHost(
        [OwnedDomain(f"tb-{dead}-c1", dead, True), OwnedDomain(f"tb-{live}-c1", live, True),
         OwnedDomain("someone-elses-vm", None, True)],
        [f"tb-{dead}-c1.qcow2", f"tb-{dead}-c2_VARS.fd", f"tb-{dead}-c1.vmlinuz", f"tb-{dead}-c1.initrd",
         f"tb-{live}-c1.qcow2", f"tb-{live}-c1.vmlinuz", "base.qcow2"],
    )  # fmt: skip
    try:
        report = reap(runs, [(host, tmp_path / "pool")])
    finally:
        lock.release()
    assert host.removed == [f"tb-{dead}-c1"]
    assert sorted(host.deleted) == sorted(
        [f"tb-{dead}-c1.qcow2", f"tb-{dead}-c2_VARS.fd", f"tb-{dead}-c1.vmlinuz", f"tb-{dead}-c1.initrd"]
    )
    assert report.interrupted_runs == [dead]
    closed = json.loads((runs / dead / "run.json").read_text())
    assert (closed["status"], closed["verdict"], closed["interrupted"]) == ("finished", "inconclusive", True)
    assert not (runs / dead / "work").exists()  # the run's SSH key and staged copies
    assert (runs / live / "work").exists()
    assert json.loads((runs / finished / "run.json").read_text())["verdict"] == "passed"  # never touched


def test_two_reapers_closing_the_same_dead_runs_at_once_both_succeed(tmp_path):
    """Every gate and service start reaps; parallel starts close the same dead run at the same
    moment (CI: one renamed the other's temporary run.json away and its gate failed to open)."""
    runs = tmp_path / "runs"
    dead = [f"20261126-01{index:04d}-aaaa" for index in range(60)]
    old = time.time() - 3600
    for run_id in dead:
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "run.json").write_text(json.dumps({"run_id": run_id, "status": "running"}))
        os.utime(runs / run_id, (old, old))
    start = threading.Barrier(4)

    def reaper() -> None:
        start.wait()
        reap(runs, [])

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(reaper) for _ in range(4)]:
            done.result()  # raises what a reaper raised
    for run_id in dead:
        assert json.loads((runs / run_id / "run.json").read_text())["verdict"] == "inconclusive"
        assert [path.name for path in (runs / run_id).iterdir()] == ["run.json"]  # no temporary left


def test_the_reaper_leaves_a_run_directory_too_young_to_hold_its_lock_yet(tmp_path):
    runs = tmp_path / "runs"
    young = "20261126-010000-dddd"
    (runs / young / "work").mkdir(parents=True)
    host = LeftoverHost([], [f"tb-{young}-c1.qcow2"])
    report = reap(runs, [(host, tmp_path / "pool")])
    assert (host.deleted, report.interrupted_runs) == ([], [])


# -- the Linux probe -------------------------------------------------------------------------------


def test_probe_facts_are_parsed_from_the_guests_answer():
    script = probe_script()
    assert "/proc/sys/kernel/random/boot_id" in script and "kernel.panic_on_oops" in script
    facts = parse_facts(
        "boot_id=3916ae39-6cca\ntainted=12288\nsysctl.kernel.panic_on_oops=1\nsysctl.kernel.panic=0\nnoise\n"
    )
    assert (facts.boot_id, facts.tainted) == ("3916ae39-6cca", 12288)
    assert facts.sysctls == {"kernel.panic_on_oops": "1", "kernel.panic": "0"}
    assert parse_facts("tainted=?\n").tainted is None


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("echo 'sensor: ok'", (0, "sensor: ok")),
        ("echo 'it said: testbed-health-rc=0'; exit 5", (5, "it said: testbed-health-rc=0")),
        ("echo 'oops' >&2; exit 255", (255, "oops")),  # not ssh's 255: the check's own
        ("exit 3", (3, "")),
        ("sleep 5", (124, "")),  # the time limit
    ],
)
def test_the_health_check_runs_in_the_probes_connection_and_reports_its_own_status(check, expected):
    """What the guest's shell runs, run here by sh: the line always exits 0, the status is parsed."""
    completed = subprocess.run(
        ["sh", "-c", health_command_line(check, 0.5)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert parse_health(completed.stdout) == expected


def test_a_health_answer_cut_short_has_no_status():
    assert parse_health("half an answer") == (None, "half an answer")


# -- the guest network -------------------------------------------------------------------------------


def test_the_guest_network_has_no_route_and_no_dns():
    xml = network_xml("endpoint-testbed", "tbbr0", "192.168.123.0/24")
    document = assert_valid("network", xml)
    assert document.find("forward") is None
    assert document.find("dns").get("enable") == "no"
    assert network_is_contained(xml)
    assert not network_is_contained(xml.replace("<dns enable='no'/>", ""))


def test_the_guest_filter_lets_through_dhcp_and_the_hosts_ssh_only():
    xml = guest_filter_xml("192.168.123.0/24")
    document = assert_valid("nwfilter", xml)
    assert document.get("name") == GUEST_FILTER
    assert document.find("filterref").get("filter") == "clean-traffic"
    rules = document.findall("rule")
    accepted = [
        (r.get("direction"), r[0].tag, r[0].get("dstportstart") or r[0].get("srcportstart"))
        for r in rules
        if r.get("action") == "accept"
    ]
    assert accepted == [("out", "udp", "67"), ("in", "udp", "68"), ("in", "tcp", "22"), ("out", "tcp", "22")]
    tcp_in = next(r[0] for r in rules if r.get("direction") == "in" and r[0].tag == "tcp")
    assert tcp_in.get("srcipaddr") == "192.168.123.1"
    assert "NEW" not in next(r[0] for r in rules if r.get("direction") == "out" and r[0].tag == "tcp").get(
        "state"
    )
    last = rules[-1]
    assert (last.get("action"), last.get("direction"), last[0].tag) == ("drop", "inout", "all")
