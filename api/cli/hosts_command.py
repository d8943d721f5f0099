"""``testbed hosts``: the configured libvirt hosts, as the testbed sees them."""

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from api.cli.common import JsonOption, errors_as_exit_codes, settings
from orchestrator.errors import TestbedError


def hosts(json_output: JsonOption = False) -> None:
    """The configured libvirt hosts: reachable?, accelerator, capacity, testbed domains present."""
    from orchestrator.adapters.libvirt_host import LibvirtHost  # noqa: PLC0415

    rows = []
    with errors_as_exit_codes():
        for config in settings().hosts:
            host = LibvirtHost(config)
            row: dict[str, Any] = {"name": config.name, "uri": config.uri}
            try:
                host.connect()
                row.update(
                    reachable=True,
                    domain_type=host.domain_type(),
                    max_cells=host.max_cells(),
                    free_memory_mib=host.free_memory_mib(),
                    testbed_domains=host.testbed_domains(),
                )
            except TestbedError as exc:
                row.update(reachable=False, problem=str(exc))
            finally:
                host.close()
            rows.append(row)
    if json_output:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="libvirt hosts")
    for column in ("name", "uri", "reachable", "accel", "max cells", "free MiB", "testbed domains"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["uri"],
            "yes" if row["reachable"] else f"no: {row.get('problem', '')}",
            "kvm" if row.get("domain_type") == "kvm" else "tcg" if row.get("reachable") else "",
            str(row.get("max_cells", "")),
            str(row.get("free_memory_mib", "")),
            ", ".join(row.get("testbed_domains", [])) or "none",
        )
    Console().print(table)
