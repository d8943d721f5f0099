"""One cell on one libvirt host, whatever its OS: what the cell machine's commands mean for a domain.

The domain's lifecycle — overlay, transient domain, lifecycle events, NMI, reconnecting, evidence,
teardown — is the same for every family; the family's ``GuestChannel`` answers what only the guest
OS can (readiness, probes, installs, reboots). Long work runs in worker threads that report back
with ``post``; a worker that was stopped posts nothing more, and one that breaks posts
``InfraFailed`` instead of dying silently.
"""

import json
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestrator.adapters.domain_xml import domain_name
from orchestrator.adapters.libvirt_events import AgentSignal, DomainSignal, PanicDetails
from orchestrator.adapters.libvirt_host import LibvirtHost
from orchestrator.core.cell_events import (
    GuestAnswered,
    HostReconnected,
    InfraFailed,
    ProbeFinished,
    StepFinished,
)
from orchestrator.core.outcomes import Blame, CellOutcome
from orchestrator.core.plan import CellPlan, InstallStep
from orchestrator.core.ports import Evidence, Post
from orchestrator.core.sanitize import one_line
from orchestrator.errors import InfrastructureError, TestbedError
from orchestrator.guests.channel import (
    DomainFiles,
    GuestChannel,
    GuestEndpoint,
    GuestFamily,
    LeavesHostFiles,
    NotReadyError,
    StagesHostFiles,
)
from orchestrator.guests.run_context import RunContext

DOMAIN_LOG_TAIL_LINES = 200
PANIC_FILE = "panic.json"  # QEMU's GUEST_PANICKED details, beside console.log: the crash parsers read it
# Between readiness attempts (each a few agent calls); an agent connecting wakes the probe early.
READY_RETRY_SECONDS = 1.0


def attempt_domain_name(run_id: str, cell_id: str, attempt: int) -> str:
    """Each attempt of a cell gets a domain (and an overlay) of its own: a fresh clone."""
    name = domain_name(run_id, cell_id)
    return name if attempt == 1 else f"{name}-a{attempt}"


class _Worker:
    """A thread doing one piece of work that can be told to stop; it reports only while wanted."""

    def __init__(self, name: str, work: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self._thread = threading.Thread(target=work, args=(self.stop,), name=name, daemon=True)

    def start(self) -> "_Worker":
        self._thread.start()
        return self

    def cancel(self, join_s: float = 15.0) -> None:
        self.stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=join_s)


class DomainCell:
    """Carries out one cell's commands on one libvirt host, with a family's guest channel."""

    def __init__(
        self, plan: CellPlan, post: Post, host: LibvirtHost, run: RunContext, family: GuestFamily
    ) -> None:
        self.plan = plan
        self.host_name = host.name
        self._post = post
        self._host = host
        self._run = run
        self._family = family
        self.domain = attempt_domain_name(run.run_id, plan.cell_id, plan.attempt)
        self.overlay_name = f"{self.domain}.qcow2"
        self.cell_dir = run.cell_dir(plan.cell_id, plan.attempt)
        self.console_log = self.cell_dir / "console.log"
        self._channel: GuestChannel = family.channel(plan, self.domain)
        self._endpoint: GuestEndpoint | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._probe: _Worker | None = None
        self._stopping: list[_Worker] = []  # probes told to stop, not joined yet
        self._step: _Worker | None = None
        self._started = False
        self._pool_dir = run.settings.pool_dir(host.config)
        self._files: DomainFiles | None = None

    # -- provisioning -----------------------------------------------------------------------

    def provision(self) -> None:
        record = self._run.images[self.plan.image.name]
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        self.cell_dir.chmod(0o755)
        self._host.subscribe(self.domain, self._on_signal)
        overlay = self._host.create_overlay(self._pool_dir, self.overlay_name, record.disk)
        self._files = DomainFiles(self.console_log, overlay)
        if self._host.config.is_local and isinstance(self._family, StagesHostFiles):
            try:
                self._family.stage_host_files(self.plan, self._files)
            except OSError as exc:
                problem = f"host {self.host_name}: cannot stage the domain's files: {exc}"
                raise InfrastructureError(problem) from exc
        xml = self._family.domain_xml(self.plan, self.domain, self._files, self._run.domain_type(self._host))
        (self.cell_dir / "domain.xml").write_text(xml)
        self._started = True
        self._host.start_transient(xml)

    def _on_signal(self, signal: DomainSignal) -> None:
        if isinstance(signal, AgentSignal):
            if signal.connected:
                self._wake.set()
            return
        if isinstance(signal, PanicDetails):
            self._record_panic(signal)  # the lifecycle event, not this, tells the machine
            return
        self._post(signal)

    def _record_panic(self, details: PanicDetails) -> None:
        """Every GUEST_PANICKED of the cell, in order, as evidence the family's crash parser reads."""
        path = self.cell_dir / PANIC_FILE
        with self._lock:
            recorded = json.loads(path.read_text()) if path.exists() else []
            path.write_text(json.dumps([*recorded, details.as_dict()], indent=2) + "\n")

    # -- readiness and health probes --------------------------------------------------------

    def start_probe(self, boot: int, stale_mark: str | None) -> None:
        del boot  # the boot mark, not the count, tells boots apart
        self._replace_probe(_Worker(f"ready-{self.domain}", lambda stop: self._await_ready(stale_mark, stop)))

    def _await_ready(self, stale_mark: str | None, stop: threading.Event) -> None:
        last = ""
        while not stop.is_set():
            try:
                endpoint = self._channel.ask_ready(stale_mark)
            except (NotReadyError, TestbedError, OSError) as exc:
                last = self._note_not_ready(str(exc), last)
                self._wake.wait(READY_RETRY_SECONDS)
                self._wake.clear()
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must reach the machine, not kill the thread
                self._report(
                    stop, InfraFailed(f"readiness probe: internal error ({type(exc).__name__}): {exc}")
                )
                return
            with self._lock:
                if stop.is_set():
                    return
                self._endpoint = endpoint
            self._post(GuestAnswered(endpoint.boot_mark))
            return

    def _note_not_ready(self, problem: str, last: str) -> str:
        """Why the guest is not ready yet, each time the reason changes: readiness.log is what a
        person reads when a boot never became ready."""
        if problem != last:
            with (self.cell_dir / "readiness.log").open("a") as stream:
                stream.write(f"{time.strftime('%H:%M:%S')} {one_line(problem, 500)}\n")
        return problem

    def start_health_probe(self, boot: int, health_check: bool) -> None:
        self._replace_probe(
            _Worker(f"probe-{self.domain}", lambda stop: self._health(boot, health_check, stop))
        )

    def _health(self, boot: int, health_check: bool, stop: threading.Event) -> None:
        try:
            report = self._channel.probe(self._endpoint, health_check=health_check)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the machine must hear of it
            self._report(stop, InfraFailed(f"health probe: {type(exc).__name__}: {exc}"))
            return
        self._record_probe(boot, report.__dict__)
        self._report(stop, ProbeFinished(report))

    def _record_probe(self, boot: int, facts: dict[str, Any]) -> None:
        """Every probe's facts are evidence: probes.jsonl beside the console."""
        line = {"boot": boot, **{key: value for key, value in facts.items() if key != "findings"}}
        line["findings"] = [finding.__dict__ for finding in facts.get("findings", ())]
        with (self.cell_dir / "probes.jsonl").open("a") as stream:
            stream.write(json.dumps(line, default=str) + "\n")

    def _replace_probe(self, worker: _Worker) -> None:
        self.stop_probe()
        self._join_stopped()  # never two probes on one guest at once
        with self._lock:
            self._probe = worker
        worker.start()

    def stop_probe(self) -> None:
        """Tell the probe to stop without waiting: it may be blocked in an SSH or agent call for
        seconds, and a cell being canceled must reach its teardown at once (fail-fast's 2 s). It
        is joined before the next probe starts, or once the domain is gone."""
        with self._lock:
            probe, self._probe = self._probe, None
            if probe is not None:
                self._stopping.append(probe)
        if probe is not None:
            probe.stop.set()
        self._wake.set()

    def _join_stopped(self) -> None:
        with self._lock:
            stopping, self._stopping = self._stopping, []
        for probe in stopping:
            probe.cancel()

    def request_reboot(self, boot: int) -> None:
        del boot
        self._channel.reboot()

    def inject_nmi(self) -> None:
        self._host.inject_nmi(self.domain)

    def reset_guest(self) -> None:
        self._host.reset_crashed(self.domain)

    def _report(self, stop: threading.Event, event: Any) -> None:
        with self._lock:
            if stop.is_set():
                return
        self._post(event)

    # -- install steps ----------------------------------------------------------------------

    def start_step(self, step: InstallStep) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            raise InfrastructureError("no guest endpoint: the readiness probe never answered")
        worker = _Worker(f"step-{self.domain}", lambda stop: self._run_step(step, endpoint, stop))
        with self._lock:
            self._step = worker
        worker.start()

    def _run_step(self, step: InstallStep, endpoint: GuestEndpoint, cancel: threading.Event) -> None:
        try:
            finished = self._channel.run_step(endpoint, step, cancel)
        except Exception as exc:  # noqa: BLE001 - the step must end with a result, whatever broke
            kind = "" if isinstance(exc, TestbedError) else f"internal error ({type(exc).__name__}): "
            finished = StepFinished(step, ok=False, blame=Blame.INFRASTRUCTURE, detail=f"{kind}{exc}")
        self._report(cancel, finished)

    def cancel_step(self) -> None:
        with self._lock:
            step, self._step = self._step, None
        if step is not None:
            step.stop.set()  # ansible-runner notices through its cancel callback; no need to wait here

    # -- reconnecting -----------------------------------------------------------------------

    def start_reconnect(self) -> None:
        self._replace_probe(_Worker(f"reconnect-{self.domain}", self._reconnect))

    def _reconnect(self, stop: threading.Event) -> None:
        try:
            self._host.reconnect()
            self._host.subscribe(self.domain, self._on_signal)
            condition = self._host.domain_condition(self.domain)
            state = self._host.domain_state(self.domain)
        except TestbedError as exc:
            self._report(stop, InfraFailed(str(exc)))
            return
        self._report(stop, HostReconnected(condition, f"libvirt state {state}"))

    # -- evidence and teardown --------------------------------------------------------------

    def collect_evidence(self, outcome: CellOutcome, reason: str, summary: dict[str, Any]) -> Evidence:
        evidence = Evidence(directory=str(self.cell_dir))
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        state: tuple[int, int] | None = None
        if self._started:
            try:
                state = self._host.domain_state(self.domain)
            except InfrastructureError as exc:
                evidence.warnings.append(f"domain state not read: {exc}")
        domain_log = self._copy_domain_log(evidence)
        if outcome is not CellOutcome.PASSED and self.console_log.exists():
            if outcome is not CellOutcome.CANCELED:  # a guest stopped by us was printing no report
                self._let_the_console_settle()  # (a booting one never falls quiet: fail-fast's 2 s)
            evidence.crash = self._family.crash_report(self.console_log, domain_log)
            if evidence.crash is not None:
                (self.cell_dir / "crash.json").write_text(json.dumps(evidence.crash, indent=2) + "\n")
        files = sorted(path.name for path in self.cell_dir.iterdir())
        summary = {
            **summary,
            "domain": self.domain,
            "host": self.host_name,
            "domain_state_at_end": list(state) if state else None,
            "crash": evidence.crash,
            "files": files,
        }
        (self.cell_dir / "cell.json").write_text(json.dumps(summary, indent=2) + "\n")
        return evidence

    def _let_the_console_settle(self, quiet_s: float = 1.5, most_s: float = 10.0) -> None:
        """A guest that just panicked may still be printing its report (a panic from NMI context
        flushes the console last): wait until the log stops growing, a few seconds at most. There
        is no event for "virtlogd wrote more", so this looks at the file's size."""
        deadline = time.monotonic() + most_s
        size, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            current = self.console_log.stat().st_size
            if current != size:
                size, quiet_since = current, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return
            time.sleep(0.25)

    def _copy_domain_log(self, evidence: Evidence) -> str:
        if not self._host.config.is_local:
            evidence.warnings.append("domain log not copied: remote host logs are not fetched yet")
            return ""
        source = self._host.config.log_dir / f"{self.domain}.log"
        if not source.exists():
            return ""
        lines = source.read_text(errors="replace").splitlines()[-DOMAIN_LOG_TAIL_LINES:]
        text = "\n".join(lines) + "\n"
        (self.cell_dir / "domain.log").write_text(text)
        return text

    def teardown(self) -> None:
        """Remove the domain and the overlay whatever happened; report every failure at the end.

        The probe is only told to stop here and joined once the domain is gone: it may be blocked in
        an SSH or agent call for seconds, which the guest's end cuts short (fail-fast's 2 s)."""
        self.stop_probe()
        self.cancel_step()
        self._host.unsubscribe(self.domain)
        problems = []
        for attempt in range(2):
            try:
                self._host.remove_domain(self.domain)
                self._host.delete_overlay(self._pool_dir, self.overlay_name)
                break
            except InfrastructureError as exc:
                if attempt == 0:
                    try:  # the connection may have broken: one reconnection, then report
                        self._host.reconnect()
                        continue
                    except InfrastructureError as again:
                        problems.append(str(again))
                problems.append(str(exc))
                break
        self._join_stopped()
        if self._host.config.is_local:
            (self._host.config.log_dir / f"{self.domain}.log").unlink(missing_ok=True)
        problems += self._remove_host_leftovers()
        shutil.rmtree(self._run.cell_work_dir(self.plan.cell_id, self.plan.attempt), ignore_errors=True)
        if problems:
            raise InfrastructureError("; ".join(problems))

    def _remove_host_leftovers(self) -> list[str]:
        """What libvirt keeps after a transient domain is gone (Windows: its NVRAM copy; Linux: the
        domain's kernel and initrd). Remote hosts' files are beyond this process's reach: they are
        named in the evidence instead. Returns what could not be removed."""
        if self._files is None or not isinstance(self._family, LeavesHostFiles):
            return []
        leftovers = self._family.host_leftovers(self._files)
        if not self._host.config.is_local:
            if leftovers:
                note = "".join(f"{path}\n" for path in leftovers)
                (self.cell_dir / "host-leftovers.txt").write_text(f"left on host {self.host_name}:\n{note}")
            return []
        problems = []
        for path in leftovers:
            if path.parent == self._pool_dir:
                # A libvirtd restarted under the cell scanned the pool and lists these files as
                # volumes: deleted behind its back, they would stay listed. (Unknown: a no-op.)
                try:
                    self._host.delete_overlay(self._pool_dir, path.name)
                except InfrastructureError as exc:
                    problems.append(str(exc))
            path.unlink(missing_ok=True)
        return problems
