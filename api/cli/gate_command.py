"""``testbed gate``: run a matrix against a candidate on this machine's hosts, without a server.

``--dry-run`` validates and prints the plan; ``--explain DIR`` also writes, for every cell, what
would run: the domain XML its family renders, the ansible inventory (SSH for Linux, WinRM for
Windows) and the playbook run plan (each install step's playbook and variables), with the content
staged as the run would stage it. Nothing is started: no overlay, no domain, no guest.
"""

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from api.cli.common import JsonOption, console, err, errors_as_exit_codes, settings
from api.cli.junit import junit_xml
from api.cli.progress import RunProgress, print_result
from orchestrator.core.matrix import plan_as_yaml
from orchestrator.core.plan import CellPlan, InstallStep, StepKind
from orchestrator.core.verdict import EXIT_CODES
from orchestrator.errors import InfrastructureError

if TYPE_CHECKING:  # importing orchestrator.guests loads libvirt: at run time only where needed
    from orchestrator.adapters.libvirt_host import LibvirtHost
    from orchestrator.config import Settings
    from orchestrator.engine.gate import PreparedGate
    from orchestrator.guests.channel import GuestChannel, GuestEndpoint, GuestFamily, PlaybookRun
    from orchestrator.guests.run_context import RunContext

DRY_RUN_ID = "dry-run"  # stands for the run id in domain names and paths of an explained plan
GUEST_ADDRESS = "<the guest's address, from DHCP at boot>"


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def gate(  # noqa: PLR0917 - typer makes each parameter an option
    matrix: Annotated[Path, typer.Option(help="Matrix YAML file.")],
    candidate: Annotated[Path, typer.Option(help="Candidate directory (or its candidate.yaml).")],
    json_output: JsonOption = False,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the plan; start nothing.")
    ] = False,
    explain: Annotated[
        Path | None,
        typer.Option(
            help="With or without --dry-run: write each cell's domain XML, inventory and playbook run "
            "plan into this directory; start nothing."
        ),
    ] = None,
) -> None:
    """Run a matrix against a candidate on the configured libvirt hosts, without a server."""
    from orchestrator.engine.gate import check_hosts_can_run, prepare_gate, run_gate  # noqa: PLC0415 - libvirt loads only when used

    with errors_as_exit_codes():
        configured = settings()
        prepared = prepare_gate(configured, matrix, candidate)
        if dry_run or explain is not None:
            cells = explain_cells(configured, prepared, explain) if explain is not None else []
            if json_output:
                document = {"plan": prepared.plan.as_dict(), **({"cells": cells} if explain else {})}
                sys.stdout.write(json.dumps(document, indent=2) + "\n")
            else:
                sys.stdout.write(plan_as_yaml(prepared.plan))
            for cell in cells:
                if cell["refused"]:
                    err.print(f"{cell['cell_id']}: {cell['refused']}", highlight=False, markup=False)
            if explain is not None:
                err.print(f"explained {len(cells)} cell(s) in {explain}", highlight=False, markup=False)
            return
        check_hosts_can_run(configured, prepared)
        out = console(stderr=json_output)
        out.print(
            f"gate: {prepared.plan.candidate_name} {prepared.plan.candidate_version} on "
            f"{len(prepared.plan.cells)} cell(s) of matrix {prepared.plan.matrix_name}",
            highlight=False,
        )
        # A CI job being stopped sends SIGTERM: treat it like Ctrl-C, so every cell still keeps its
        # evidence and tears its domain down before the process ends.
        signal.signal(signal.SIGTERM, _interrupt)
        with RunProgress(out, prepared.plan) as progress:
            result = run_gate(configured, prepared, progress)
        if junit is not None:
            junit.write_text(junit_xml(result), encoding="utf-8")
        if json_output:
            sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
        else:
            print_result(out, result)
    raise typer.Exit(EXIT_CODES[result.verdict])


# -- the explained dry run --------------------------------------------------------------------------


def explain_cells(settings: "Settings", prepared: "PreparedGate", out_dir: Path) -> list[dict[str, Any]]:
    """Write what every cell would run into ``out_dir``; a summary per cell.

    The files are what the families make for a real run, on the first configured host, with
    ``dry-run`` for the run id: ``cells/<cell>/domain.xml``, ``inventory.yml``, ``playbooks.yml``.
    A cell its host could not run (Windows without KVM) is explained as a KVM host would run it
    and marked ``refused``.
    """
    from orchestrator.adapters.libvirt_host import LibvirtHost  # noqa: PLC0415 - libvirt loads only when used
    from orchestrator.engine.gate import PLAYBOOKS_DIR  # noqa: PLC0415
    from orchestrator.guests import FAMILIES, RunContext  # noqa: PLC0415
    from orchestrator.guests.domain_cell import attempt_domain_name  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plan.yaml").write_text(plan_as_yaml(prepared.plan), encoding="utf-8")
    work_dir = out_dir / "work"
    work_dir.mkdir(exist_ok=True)
    activity = None
    if prepared.activity_script is not None:
        activity = work_dir / "activity.sh"
        activity.write_bytes(prepared.activity_script)
    context = RunContext(
        run_id=DRY_RUN_ID,
        settings=settings,
        candidate=prepared.candidate,
        images=prepared.images,
        run_dir=out_dir,
        work_dir=work_dir,
        playbooks_dir=PLAYBOOKS_DIR,
        ssh_private_key=work_dir / "id_ed25519",  # made per run; the dry run makes none
        ssh_public_key="(the run's own key)",
        products=prepared.products,
        activity_script=activity,
        variant_seed=prepared.plan.variant_seed,
    )
    host = LibvirtHost(settings.hosts[0])
    host_type = _domain_type(host)
    summaries = []
    for cell in prepared.plan.cells:
        family = FAMILIES[cell.image.os_family](host, context)
        domain = attempt_domain_name(DRY_RUN_ID, cell.cell_id, cell.attempt)
        refused = ""
        if family.needs_kvm and host_type != "kvm":
            refused = (
                f"refused on host {host.name} ({host.config.uri}): it offers no KVM; "
                "explained as a KVM host would run it"
            )
        summaries.append(
            _explain_cell(cell, family, domain, context, host, host_type=host_type, refused=refused)
        )
    (out_dir / "explain.json").write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    return summaries


def _domain_type(host: "LibvirtHost") -> str:
    """The host's accelerator; a remote host not configured with one is asked over a connection."""
    try:
        return str(host.domain_type())
    except InfrastructureError:
        try:
            host.connect()
            return str(host.domain_type())
        except InfrastructureError:
            return "unknown"
        finally:
            host.close()


def _explain_cell(
    cell: CellPlan,
    family: "GuestFamily",
    domain: str,
    context: "RunContext",
    host: "LibvirtHost",
    *,
    host_type: str,
    refused: str,
) -> dict[str, Any]:
    from orchestrator.guests.channel import DomainFiles, GuestEndpoint, PlansSteps  # noqa: PLC0415

    cell_dir = context.cell_dir(cell.cell_id, cell.attempt)
    cell_dir.mkdir(parents=True, exist_ok=True)
    overlay = context.settings.pool_dir(host.config) / f"{domain}.qcow2"
    files = DomainFiles(cell_dir / "console.log", overlay)
    domain_type = "kvm" if family.needs_kvm or host_type == "kvm" else "qemu"
    (cell_dir / "domain.xml").write_text(
        family.domain_xml(cell, domain, files, domain_type), encoding="utf-8"
    )
    endpoint = GuestEndpoint(boot_mark="(dry run)", address=GUEST_ADDRESS)
    steps: list[dict[str, Any]] = []
    inventory: dict[str, Any] | None = None
    try:
        channel = family.channel(cell, domain)
    except Exception as exc:  # noqa: BLE001 - a channel that cannot be made is part of the explanation
        steps = [{"step": str(step), "error": f"{type(exc).__name__}: {exc}"} for step in cell.steps]
        cell_steps: tuple[InstallStep, ...] = ()
    else:
        cell_steps = cell.steps
    for step in cell_steps:
        try:
            planned: PlaybookRun = (
                channel.plan_step(endpoint, step)
                if isinstance(channel, PlansSteps)
                else _linux_step(channel, endpoint, step, context)
            )
        except Exception as exc:  # noqa: BLE001 - a step that cannot run is part of the explanation
            steps.append({"step": str(step), "error": f"{type(exc).__name__}: {exc}"})
            continue
        inventory = planned.inventory
        steps.append({"step": str(step), "playbook": str(planned.playbook), "extravars": planned.extravars})
    if inventory is not None:
        (cell_dir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
    (cell_dir / "playbooks.yml").write_text(yaml.safe_dump(steps, sort_keys=False), encoding="utf-8")
    return {
        "cell_id": cell.cell_id,
        "family": family.name,
        "domain": domain,
        "host": host.name,
        "domain_type": domain_type,
        "refused": refused,
        "directory": str(cell_dir),
        "steps": [entry["step"] for entry in steps],
    }


def _linux_step(
    channel: "GuestChannel", endpoint: "GuestEndpoint", step: InstallStep, context: "RunContext"
) -> "PlaybookRun":
    """The Linux channel's step plan, from the same builders its ``run_step`` uses (it has no
    public ``plan_step`` yet)."""
    from orchestrator.adapters.ansible_playbook import inventory_for  # noqa: PLC0415
    from orchestrator.adapters.ssh import SshTarget  # noqa: PLC0415
    from orchestrator.guests.channel import PlaybookRun  # noqa: PLC0415
    from orchestrator.guests.linux.channel import LinuxChannel  # noqa: PLC0415

    if not isinstance(channel, LinuxChannel):
        raise TypeError(f"{type(channel).__name__} cannot describe its install steps")
    playbooks = context.playbooks_dir / "linux"
    match step.kind:
        case StepKind.CANDIDATE:
            playbook, extravars = playbooks / "install_candidate.yml", channel._candidate_vars()
        case StepKind.PRODUCT:
            playbook, extravars = playbooks / "install_candidate.yml", channel._product_vars(step.name)
        case _:
            playbook, extravars = playbooks / "run_activity.yml", channel._activity_vars()
    target = SshTarget(endpoint.address, "root", context.ssh_private_key, None)
    return PlaybookRun(playbook, inventory_for(target), extravars)
