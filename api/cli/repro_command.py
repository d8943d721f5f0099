"""``testbed repro RUN CELL``: boot one cell of a run again, exactly as the run booted it.

It writes a directory (``--out``, default ``<state>/repro/<run>/<cell>``) holding what the boot needs
and prints the one command that boots it (``boot.sh`` there, which is ``testbed repro ... --boot``):

- ``repro.json``: the cell's plan as the run had it (image digest, steps, reboots, timeouts, content
  variant and seed, pinned digests) and how the cell ended then;
- ``candidate/``: the candidate's files as the run read them, every digest checked against the
  digests the run pinned; ``staged/``: the exact bytes the guest gets (the content variant);
- ``domain.xml``: the domain the family renders for the boot — a fresh overlay on the same golden
  image, found by digest (refused when that image is gone: a rebuild is another image);
- ``boot.sh``: boots it through the engine as a one-cell run (same family, same playbooks, same
  probes), so the candidate is installed the way the run did, and says whether it ended the same.

Exit codes: those of ``testbed gate`` for ``--boot`` (1: the cell failed again); 0 for writing; 3 when
the run, the cell, the image or the candidate cannot give the exact cell back.
"""

import base64
import hashlib
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.common import JsonOption, console, errors_as_exit_codes, settings, state
from api.cli.progress import RunProgress
from orchestrator.candidate import MANIFEST_NAME, Candidate, load_candidate
from orchestrator.core.matrix_spec import MatrixSpec
from orchestrator.core.plan import (
    CellPlan,
    CrashPolicy,
    ImageFacts,
    InstallStep,
    Resources,
    RunPlan,
    StepKind,
    Timeouts,
)
from orchestrator.core.records import RunResult
from orchestrator.core.verdict import EXIT_CODES
from orchestrator.errors import ConfigurationError
from orchestrator.images.catalog import ImageCatalog, ImageRecord

if TYPE_CHECKING:  # the engine loads libvirt: only when a repro is actually made
    from orchestrator.config import Settings
    from orchestrator.engine.gate import PreparedGate

REPRO_FILE = "repro.json"


def cell_plan_from_dict(data: dict[str, Any]) -> CellPlan:
    """A cell plan read back from ``RunPlan.as_dict`` (plan.json); attempt 1: a fresh clone."""
    timeouts, resources = data["timeouts"], data["resources"]
    return CellPlan(
        cell_id=data["cell_id"],
        image=ImageFacts(**data["image"]),
        coinstalled=tuple(data["coinstalled"]),
        steps=tuple(InstallStep(StepKind(step["kind"]), step["name"]) for step in data["steps"]),
        reboots=int(data["reboots"]),
        boot_loop_after=int(data["boot_loop_after"]),
        timeouts=Timeouts(**timeouts),
        resources=Resources(**resources),
        attempt=1,
        sensor_version=data.get("sensor_version"),
        content_variant=data.get("content_variant", "as-shipped"),
        activity=bool(data.get("activity", False)),
        crash_policy=CrashPolicy(data.get("crash_policy", CrashPolicy.STOP)),
        control_of=data.get("control_of"),
        content_digests=tuple((name, digest) for name, digest in data.get("content_digests", ())),
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"{what}: {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{what}: {path} holds no JSON object")
    return data


def read_run(runs_dir: Path, run_id: str, cell_id: str) -> dict[str, Any]:
    """What the run recorded about one cell: its plan, the run's pins, and how the cell ended."""
    run_dir = runs_dir / run_id
    if not run_dir.is_dir():
        raise ConfigurationError(f"run {run_id}: no evidence at {run_dir}")
    if not (run_dir / "plan.json").exists():
        raise ConfigurationError(f"run {run_id}: it kept no plan.json (runs before testbed repro existed)")
    recorded = _read_json(run_dir / "plan.json", f"run {run_id}")
    cells = {cell["cell_id"]: cell for cell in recorded["plan"]["cells"]}
    if cell_id not in cells:
        raise ConfigurationError(
            f"run {run_id} has no cell {cell_id!r} (its cells: {', '.join(sorted(cells))})"
        )
    result = _read_json(run_dir / "run.json", f"run {run_id}") if (run_dir / "run.json").exists() else {}
    ended: dict[str, Any] = next(
        (cell for cell in result.get("cells", []) if cell.get("cell_id") == cell_id), {}
    )
    crash = ended.get("crash") or {}
    return {
        "run_id": run_id,
        "cell": cells[cell_id],
        "run_plan": {key: value for key, value in recorded["plan"].items() if key != "cells"},
        "candidate_dir": recorded.get("candidate_dir"),
        "activity_script_b64": recorded.get("activity_script_b64"),
        "original": {
            "outcome": ended.get("outcome"),
            "reason": ended.get("reason"),
            "crash_title": crash.get("title"),
        },
    }


def exact_image(images_dir: Path, image: ImageFacts) -> ImageRecord:
    """The golden image the run booted, by digest; refused when the catalog no longer has it."""
    record = ImageCatalog(images_dir).usable().get(image.name)
    if record is None or record.digest != image.digest:
        now = f"it now holds {record.digest[:12]}" if record is not None else "it holds no such image now"
        raise ConfigurationError(
            f"image {image.name}: the run booted digest {image.digest[:12]}, and {now}: the exact "
            "golden image is gone, so the cell cannot be booted exactly again"
        )
    return record


def stage_candidate(source: Path, run_plan: dict[str, Any], cell: CellPlan, out: Path) -> Candidate:
    """The candidate as the run read it, copied into ``out/candidate`` with every digest checked
    against the run's pins; the content variant's bytes into ``out/staged``."""
    candidate = load_candidate(source)
    pinned: dict[str, str] = run_plan["artifact_digests"]
    found = {artifact.name: artifact.sha256 for artifact in candidate.manifest.artifacts}
    for name in sorted(set(pinned) | set(found)):
        if pinned.get(name) != found.get(name):
            raise ConfigurationError(
                f"candidate {source}: artifact {name}: the run pinned {pinned.get(name) or 'nothing'}, "
                f"the candidate has {found.get(name) or 'nothing'}: not the candidate of the run"
            )
    target = out / "candidate"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(candidate.root / MANIFEST_NAME, target / MANIFEST_NAME)
    for artifact in candidate.manifest.artifacts:
        (target / artifact.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(candidate.path_of(artifact), target / artifact.path)
    staged = load_candidate(target)  # every copied file checked against the manifest again
    shutil.rmtree(out / "staged", ignore_errors=True)
    (out / "staged").mkdir()
    seed = int(run_plan.get("variant_seed", 0))
    digests = dict(cell.content_digests)
    for artifact in staged.content_files():
        data = staged.content_bytes(artifact, cell.content_variant, seed)
        digest = hashlib.sha256(data).hexdigest()
        if digests and digests.get(artifact.name) != digest:
            raise ConfigurationError(
                f"{artifact.name}: the {cell.content_variant} variant comes out as {digest[:12]}, the run "
                f"installed {str(digests.get(artifact.name))[:12]}"
            )
        (out / "staged" / Path(artifact.path).name).write_bytes(data)
    return staged


def prepared_repro(
    recorded: dict[str, Any], candidate: Candidate, image: ImageRecord, configured: "Settings"
) -> "PreparedGate":
    """A one-cell run of the recorded cell: the same plan, no retries (a repro answers once)."""
    from orchestrator.engine.gate import PreparedGate  # noqa: PLC0415 - libvirt loads only when used
    from orchestrator.products import load_products  # noqa: PLC0415

    cell = cell_plan_from_dict(recorded["cell"])
    run_plan = recorded["run_plan"]
    plan = RunPlan(
        matrix_name="repro",
        candidate_name=candidate.name,
        candidate_version=candidate.version,
        artifact_digests=dict(run_plan["artifact_digests"]),
        fail_fast=False,
        cells=(cell,),
        matrix_source=f"repro of {recorded['run_id']}/{cell.cell_id}",
        variant_seed=int(run_plan.get("variant_seed", 0)),
    )
    activity = recorded.get("activity_script_b64")
    return PreparedGate(
        spec=MatrixSpec(name="repro", images=[image.name], retries=0),
        plan=plan,
        candidate=candidate,
        images={image.name: image},
        products=load_products(configured.products_path) if cell.coinstalled else {},
        activity_script=base64.b64decode(activity) if activity else None,
    )


def render_domain(configured: "Settings", prepared: "PreparedGate", run_id: str) -> str:
    """The domain XML the engine will render for the cell under ``run_id`` on the first host."""
    from orchestrator.adapters.libvirt_host import LibvirtHost  # noqa: PLC0415 - libvirt loads only when used
    from orchestrator.engine.gate import PLAYBOOKS_DIR  # noqa: PLC0415
    from orchestrator.guests import FAMILIES, RunContext  # noqa: PLC0415
    from orchestrator.guests.channel import DomainFiles  # noqa: PLC0415
    from orchestrator.guests.domain_cell import attempt_domain_name  # noqa: PLC0415

    (cell,) = prepared.plan.cells
    host = LibvirtHost(configured.hosts[0])
    run_dir = configured.runs_dir / run_id
    context = RunContext(
        run_id=run_id,
        settings=configured,
        candidate=prepared.candidate,
        images=prepared.images,
        run_dir=run_dir,
        work_dir=run_dir / "work",
        playbooks_dir=PLAYBOOKS_DIR,
        ssh_private_key=run_dir / "work" / "id_ed25519",
        ssh_public_key="",
    )
    family = FAMILIES[cell.image.os_family](host, context)
    domain = attempt_domain_name(run_id, cell.cell_id, cell.attempt)
    files = DomainFiles(
        context.cell_dir(cell.cell_id) / "console.log", configured.pool_dir(host.config) / f"{domain}.qcow2"
    )
    return family.domain_xml(cell, domain, files, host.domain_type())


def boot_script(testbed: Path, config: Path | None, run_id: str, cell_id: str, out: Path) -> str:
    command = [str(testbed), *(["--config", str(config)] if config else []), "repro", run_id, cell_id]
    return (
        "#!/bin/sh\n"
        f"# Boots cell {cell_id} of run {run_id} again: a fresh overlay on the same golden image, the\n"
        "# candidate staged beside this script, installed and rebooted as the run did it.\n"
        f'exec {shlex.join([*command, "--out", str(out), "--boot"])} "$@"\n'
    )


def write_repro(
    configured: "Settings", run_id: str, cell_id: str, out: Path, candidate_dir: Path | None
) -> dict[str, Any]:
    """Everything a boot needs, checked and written into ``out``; the repro record."""
    from orchestrator.engine.gate import new_run_id  # noqa: PLC0415

    recorded = read_run(configured.runs_dir, run_id, cell_id)
    cell = cell_plan_from_dict(recorded["cell"])
    image = exact_image(configured.images_dir, cell.image)
    source = candidate_dir or (Path(recorded["candidate_dir"]) if recorded["candidate_dir"] else None)
    if source is None:
        raise ConfigurationError(f"run {run_id} recorded no candidate directory: give --candidate")
    out.mkdir(parents=True, exist_ok=True)
    candidate = stage_candidate(source, recorded["run_plan"], cell, out)
    prepared = prepared_repro(recorded, candidate, image, configured)
    repro_run_id = new_run_id()
    (out / "domain.xml").write_text(render_domain(configured, prepared, repro_run_id))
    record = {
        **recorded,
        "repro_run_id": repro_run_id,
        "image": {"name": image.name, "digest": image.digest, "disk": str(image.disk)},
        "candidate_dir": str(out / "candidate"),
    }
    (out / REPRO_FILE).write_text(json.dumps(record, indent=2) + "\n")
    script = out / "boot.sh"
    script.write_text(
        boot_script(Path(sys.executable).parent / "testbed", state["config"], run_id, cell_id, out)
    )
    script.chmod(0o755)
    return record


def repro_summary(record: dict[str, Any], result: RunResult) -> dict[str, Any]:
    (cell,) = [cell for cell in result.cells if cell.control_of is None]
    title = (cell.crash or {}).get("title")
    original = record["original"]
    return {
        "run_id": record["run_id"],
        "cell_id": cell.cell_id,
        "repro_run_id": result.run_id,
        "outcome": str(cell.outcome),
        "reason": cell.reason,
        "crash_title": title,
        "original": original,
        "reproduced": str(cell.outcome) == original["outcome"] and title == original["crash_title"],
        "evidence_dir": cell.evidence_dir,
    }


def repro(  # noqa: PLR0917 - typer makes each parameter an argument or option
    run: Annotated[str, typer.Argument(help="The run's id (its directory under the state's runs/).")],
    cell: Annotated[str, typer.Argument(help="The cell's id, as the run's table and run.json name it.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the repro (default: <state>/repro/RUN/CELL).")
    ] = None,
    candidate: Annotated[
        Path | None, typer.Option(help="The candidate, if it moved since the run (digests are checked).")
    ] = None,
    boot: Annotated[bool, typer.Option("--boot", help="Also boot it now (what boot.sh does).")] = False,
    json_output: JsonOption = False,
) -> None:
    """Write what boots one cell of a run again, exactly, and print the command that boots it."""
    with errors_as_exit_codes():
        configured = settings()
        directory = out or configured.state_dir / "repro" / run / cell
        record = write_repro(configured, run, cell, directory, candidate)
        if not boot:
            _print_written(record, directory, json_output)
            return
        summary = _boot(configured, record, directory, json_output)
    raise typer.Exit(EXIT_CODES[summary["verdict"]])


def _print_written(record: dict[str, Any], directory: Path, json_output: JsonOption) -> None:
    command = str(directory / "boot.sh")
    if json_output:
        sys.stdout.write(
            json.dumps({**record, "directory": str(directory), "boot": command}, indent=2) + "\n"
        )
        return
    out = console()
    original = record["original"]
    ended = original["crash_title"] or original["reason"] or original["outcome"] or "(the run has not ended)"
    out.print(
        f"repro of {record['run_id']} / {record['cell']['cell_id']} in {directory}",
        highlight=False,
        markup=False,
    )
    out.print(f"the run ended it {original['outcome']}: {ended}", highlight=False, markup=False)
    out.print(f"boot it: {command}", highlight=False, markup=False)


def _boot(
    configured: "Settings", record: dict[str, Any], directory: Path, json_output: bool
) -> dict[str, Any]:
    from orchestrator.engine.gate import run_gate  # noqa: PLC0415 - libvirt loads only when used

    candidate = load_candidate(directory / "candidate")
    image = exact_image(configured.images_dir, cell_plan_from_dict(record["cell"]).image)
    prepared = prepared_repro(record, candidate, image, configured)
    out = console(stderr=json_output)
    with RunProgress(out, prepared.plan) as progress:
        result = run_gate(configured, prepared, progress, run_id=record["repro_run_id"])
    summary = {**repro_summary(record, result), "verdict": result.verdict}
    if json_output:
        sys.stdout.write(json.dumps({**summary, "verdict": str(result.verdict)}, indent=2) + "\n")
    else:
        same = "yes" if summary["reproduced"] else "no"
        ended = summary["crash_title"] or summary["reason"]
        out.print(f"repro run {result.run_id}: {summary['outcome']}: {ended}", highlight=False, markup=False)
        out.print(f"the same as in run {record['run_id']}: {same}", highlight=False, markup=False)
    return summary
