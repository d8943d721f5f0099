"""What killed runs leave behind, found and removed: domains, overlays, keys and staged copies.

A run's process holds its run lock while it runs; libvirt destroys its domains if the process
dies (autodestroy) — unless libvirtd itself restarted in between. At every start of the gate and
of the service the reaper sweeps what is left of runs whose lock nobody holds: their domains (by
the run id in the domain's metadata), their overlays (by name), their scratch directories (the
run's SSH key, known_hosts, staged candidate copies), and closes their run.json as interrupted.
Finished results are never touched.
"""

import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.adapters.atomic_file import replace_file
from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.adapters.run_lock import run_is_alive
from orchestrator.engine.run_files import interrupted_fields
from orchestrator.errors import InfrastructureError

YOUNG_S = 60.0
"""A run directory this new may belong to a run whose process has not taken its lock yet."""

_OF_A_RUN = re.compile(r"^tb-(?P<run>\d{8}-\d{6}-[0-9a-f]{4})-")
# A cell's overlay, and beside it a UEFI guest's copy of its variable store (domain_xml.nvram_path)
# or a Linux guest's copies of its kernel and initrd (domain_xml.private_boot_paths).
_CELL_FILE_ENDINGS = (".qcow2", "_VARS.fd", ".vmlinuz", ".initrd")


def run_id_of(name: str) -> str | None:
    """The run a testbed domain or cell file is named after (None: not the testbed's)."""
    match = _OF_A_RUN.match(name)
    return match.group("run") if match else None


@dataclass
class ReapReport:
    """What the reaper found and did."""

    domains: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    interrupted_runs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.domains or self.overlays or self.interrupted_runs or self.problems)


def reap(
    runs_dir: Path,
    hosts: Sequence[tuple[LibvirtHost, Path]],
    *,
    is_alive: Callable[[Path], bool] = run_is_alive,
    now: Callable[[], float] = time.time,
) -> ReapReport:
    """Sweep leftovers of dead runs on every (host, overlay pool directory)."""
    report = ReapReport()
    dead: dict[str, bool] = {}

    def is_dead(run_id: str) -> bool:
        if run_id not in dead:
            run_dir = runs_dir / run_id
            # Only runs of this state directory are ours to judge; others belong to another testbed.
            dead[run_id] = (
                run_dir.is_dir() and now() - run_dir.stat().st_mtime > YOUNG_S and not is_alive(run_dir)
            )
        return dead[run_id]

    for host, pool_dir in hosts:
        _reap_host(host, pool_dir, is_dead, report)
    if runs_dir.is_dir():
        for run_dir in sorted(runs_dir.iterdir()):
            if run_dir.is_dir() and is_dead(run_dir.name):
                _close_run(run_dir, report, now())
    return report


def reap_run(run_id: str, hosts: Sequence[tuple[LibvirtHost, Path]]) -> ReapReport:
    """Sweep what earlier attempts of one run left: its caller holds the run's lock (a restarted
    service resuming it), so nothing of the run is alive, however recently its directory changed."""
    report = ReapReport()
    for host, pool_dir in hosts:
        _reap_host(host, pool_dir, lambda candidate: candidate == run_id, report)
    return report


def _reap_host(host: LibvirtHost, pool_dir: Path, is_dead: Callable[[str], bool], report: ReapReport) -> None:
    try:
        for domain in host.owned_domains():
            if domain.run_id is not None and is_dead(domain.run_id):
                host.remove_domain(domain.name)
                report.domains.append(domain.name)
        host.refresh_pool(pool_dir)
        for name in host.overlay_names(pool_dir):
            run_id = run_id_of(name) if name.endswith(_CELL_FILE_ENDINGS) else None
            if run_id is not None and is_dead(run_id):
                host.delete_overlay(pool_dir, name)
                report.overlays.append(name)
    except InfrastructureError as exc:
        report.problems.append(str(exc))


def _close_run(run_dir: Path, report: ReapReport, at: float) -> None:
    work = run_dir / "work"
    if work.exists():
        shutil.rmtree(work, ignore_errors=True)
    run_json = run_dir / "run.json"
    try:
        data = json.loads(run_json.read_text()) if run_json.exists() else {"run_id": run_dir.name}
    except (OSError, ValueError):
        data = {"run_id": run_dir.name}
    if data.get("status") == "finished" or ("verdict" in data and "status" not in data):
        return  # a finished result is never touched
    data.update(status="finished", **interrupted_fields(at))
    replace_file(run_json, json.dumps(data, indent=2) + "\n")
    report.interrupted_runs.append(run_dir.name)
