"""A run's evidence on disk, kept up to date as it happens: run.json and events.jsonl.

run.json exists from the moment the run is accepted (status ``running``, with its plan) and is
rewritten with the verdict at the end; events.jsonl gets every event as it is persisted. The SQL
store of the service keeps the same things; these files are the evidence that travels with a run.
"""

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.atomic_file import replace_file
from orchestrator.core.records import RunEvent, RunResult
from orchestrator.engine.event_bus import RunStore


def interrupted_fields(at: float) -> dict[str, object]:
    """What closing a run whose process died adds to its run.json (the reaper), and what reopening
    it for a resumed run takes away again (``RunFiles.reopen_run``)."""
    return {
        "verdict": "inconclusive",
        "summary": "interrupted: the process running it died before it finished",
        "finished_at": at,
        "interrupted": True,
    }


class RunFiles:
    """Writes run.json and events.jsonl under each run's directory."""

    def __init__(self, runs_dir: Path) -> None:
        self._runs_dir = runs_dir
        self._lock = threading.Lock()

    def create_run(
        self,
        run_id: str,
        plan: dict[str, Any],
        *,
        candidate_id: str | None,
        matrix_id: str | None,
        priority: int,
        submitted_by: str | None,
        evidence_dir: str,
    ) -> None:
        started = {
            "run_id": run_id,
            "status": "running",
            "started_at": time.time(),
            "candidate_id": candidate_id,
            "matrix_id": matrix_id,
            "priority": priority,
            "submitted_by": submitted_by,
            "evidence_dir": evidence_dir,
            "plan": plan,
        }
        self._write(run_id, started)

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again: the reaper may have closed its run.json as interrupted
        while no process held it (a service down for more than a minute)."""
        path = self._runs_dir / run_id / "run.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # nothing readable to reopen: the run's end writes it whole
        for closing in interrupted_fields(0.0):
            data.pop(closing, None)
        self._write(run_id, {**data, "status": "running", "resumed_at": time.time()})

    def append_event(self, event: RunEvent) -> None:
        with self._lock, (self._runs_dir / event.run_id / "events.jsonl").open("a") as stream:
            stream.write(json.dumps(event.as_dict()) + "\n")

    def finish_run(self, result: RunResult) -> None:
        self._write(result.run_id, {"status": "finished", **result.as_dict()})

    def _write(self, run_id: str, data: dict[str, object]) -> None:
        path = self._runs_dir / run_id / "run.json"
        replace_file(path, json.dumps(data, indent=2, default=str) + "\n")  # never half a run.json


class Stores:
    """Several stores as one: each event goes to every one of them, in order, before fan-out."""

    def __init__(self, stores: Sequence[RunStore]) -> None:
        self._stores = list(stores)

    def create_run(
        self,
        run_id: str,
        plan: dict[str, Any],
        *,
        candidate_id: str | None,
        matrix_id: str | None,
        priority: int,
        submitted_by: str | None,
        evidence_dir: str,
    ) -> None:
        for store in self._stores:
            store.create_run(
                run_id,
                plan,
                candidate_id=candidate_id,
                matrix_id=matrix_id,
                priority=priority,
                submitted_by=submitted_by,
                evidence_dir=evidence_dir,
            )

    def append_event(self, event: RunEvent) -> None:
        for store in self._stores:
            store.append_event(event)

    def finish_run(self, result: RunResult) -> None:
        for store in self._stores:
            store.finish_run(result)

    def events_after(self, run_id: str, after_sequence: int, limit: int = 1000) -> list[RunEvent]:
        for store in self._stores:
            replay = getattr(store, "events_after", None)
            if replay is not None:
                events: list[RunEvent] = replay(run_id, after_sequence, limit)
                return events
        return []
