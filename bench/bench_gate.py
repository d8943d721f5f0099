"""`make bench`: the orchestrator's wall time for a 1-cell gate against the floor.

The floor is the same boot + install + reboots driven by a bare script with virsh (bench/floor.sh)
on the same golden image, with the same domain XML and the same stability window per boot. The
goal is a ratio of at most 1.15: the orchestrator's bookkeeping (events, ansible, evidence) must
cost little next to the guests' own time.
"""

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.adapters.domain_xml import DomainSpec, mac_for, render_domain_xml
from orchestrator.config import load_settings
from orchestrator.engine.gate import prepare_gate, run_gate
from orchestrator.images.catalog import ImageCatalog

GOAL = 1.15
HERE = Path(__file__).resolve().parent


SOAK_S = 30.0


def matrix_text(image: str, reboots: int, stability: float) -> str:
    return (
        f"name: bench\nimages: [{image}]\nreboots: {reboots}\nretries: 0\n"
        f"timeouts: {{ready: 600, stability: {stability}, install: 900, soak: {SOAK_S}}}\n"
    )


def time_orchestrator(candidate: Path, image: str, reboots: int, stability: float, scratch: Path) -> float:
    settings = load_settings()
    matrix = scratch / "matrix.yaml"
    matrix.write_text(matrix_text(image, reboots, stability))
    prepared = prepare_gate(settings, matrix, candidate)
    started = time.monotonic()
    result = run_gate(settings, prepared, lambda _event: None)
    elapsed = time.monotonic() - started
    if str(result.verdict) != "passed":
        sys.exit(f"bench: the orchestrator run did not pass ({result.summary}); see {result.evidence_dir}")
    return elapsed


def time_floor(candidate: Path, image: str, reboots: int, stability: float, scratch: Path) -> float:
    settings = load_settings()
    record = ImageCatalog(settings.images_dir).usable()[image]
    name = f"tb-bench-floor-{secrets.token_hex(3)}"
    pool = settings.pool_dir(settings.hosts[0])
    overlay = pool / f"{name}.qcow2"
    spec = DomainSpec(
        name=name,
        run_id="bench-floor",
        cell_id="floor",
        image_name=record.name,
        image_digest=record.digest,
        domain_type="qemu",
        memory_mib=1024,
        vcpus=1,
        kernel=record.kernel_image,
        initrd=record.initrd,
        cmdline=record.kernel_cmdline,
        disk=overlay,
        network=settings.network_name,
        mac=mac_for(name),
        console_log=scratch / "floor-console.log",
    )
    xml = scratch / "floor.xml"
    xml.write_text(render_domain_xml(spec))
    started = time.monotonic()
    subprocess.run(
        [HERE / "floor.sh", xml, overlay, record.disk, candidate, str(reboots), str(stability), str(SOAK_S)],
        check=True,
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--image", default="debian12-kernel-n")
    parser.add_argument("--reboots", type=int, default=2)
    parser.add_argument("--stability", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as directory:
        scratch = Path(directory)
        scratch.chmod(0o755)
        floor = time_floor(args.candidate, args.image, args.reboots, args.stability, scratch)
        print(f"floor (bare virsh script):  {floor:7.1f} s")
        orchestrator = time_orchestrator(args.candidate, args.image, args.reboots, args.stability, scratch)
        print(f"orchestrator (testbed gate): {orchestrator:7.1f} s")
    ratio = orchestrator / floor
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"ratio: {ratio:.2f} ({verdict} the goal of {GOAL:.2f})")


if __name__ == "__main__":
    main()
