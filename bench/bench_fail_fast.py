"""`make bench`: how fast fail-fast stops the rest of a run once one cell failed.

A two-cell run with fail_fast: the zero-filled sample candidate on the fast-boot image (it crashes
at install, about a minute in) and on the full Debian image (still booting then). Measured: from
the failing cell's result to the other cell's end (torn down, its slot free). The goal is 2 s.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from orchestrator.config import load_settings
from orchestrator.core.outcomes import CellOutcome
from orchestrator.core.records import RunEvent, RunEventKind
from orchestrator.engine.gate import prepare_gate, run_gate

GOAL_S = 2.0
MATRIX = """name: bench-fail-fast
images: [debian12-kernel-n-fast, debian12-kernel-n]
reboots: 1
retries: 0
fail_fast: true
timeouts: {ready: 600, stability: 5, soak: 30}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidate", type=Path, required=True, help="the zero-filled sample candidate")
    args = parser.parse_args()
    settings = load_settings()
    events: list[RunEvent] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as directory:
        matrix = Path(directory) / "matrix.yaml"
        matrix.write_text(MATRIX)
        result = run_gate(settings, prepare_gate(settings, matrix, args.candidate), events.append)
    failed = next(
        (e for e in events if e.kind is RunEventKind.CELL_FINISHED and e.outcome is CellOutcome.CRASHED), None
    )
    canceled = next((c for c in result.cells if c.outcome is CellOutcome.CANCELED), None)
    if failed is None or canceled is None or canceled.finished_at is None:
        outcomes = [str(c.outcome) for c in result.cells]
        sys.exit(f"bench: expected one crashed and one canceled cell, got {outcomes}")
    # the canceled cell's own "done" event: its teardown finished
    done = max(e.at for e in events if e.cell_id == canceled.cell_id and e.kind is RunEventKind.CELL_CHANGED)
    seconds = done - failed.at
    verdict = "within" if seconds <= GOAL_S else "OVER"
    print(f"fail-fast: the rest stopped {seconds:.2f} s after the first failure ({verdict} {GOAL_S:.0f} s)")


if __name__ == "__main__":
    main()
