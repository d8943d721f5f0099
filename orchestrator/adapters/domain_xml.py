"""Domain XML from templates: a pure function of a ``DomainSpec``, compared verbatim in tests."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined

METADATA_NAMESPACE = "urn:endpoint-testbed:cell:1"
"""Marks domains the testbed owns, so they can be found again after a restart."""

DOMAIN_PREFIX = "tb-"

_environment = Environment(
    loader=PackageLoader("orchestrator", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class DomainSpec:
    """Everything a domain definition is made from."""

    name: str
    run_id: str
    cell_id: str
    image_name: str
    image_digest: str
    domain_type: Literal["kvm", "qemu"]
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    network: str
    mac: str
    console_log: Path


def domain_name(run_id: str, cell_id: str) -> str:
    """A libvirt-safe, unique, recognizable name: tb-<run>-<cell>."""
    # '+' joins coordinates and never appears inside a name, so '__' keeps names apart.
    slug = re.sub(r"[^a-zA-Z0-9_.-]", "_", cell_id.replace("+", "__"))
    return f"{DOMAIN_PREFIX}{run_id}-{slug}"


def mac_for(name: str) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range, derived from the domain name."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def render_domain_xml(spec: DomainSpec, template: str) -> str:
    return _environment.get_template(template).render(spec=spec, namespace=METADATA_NAMESPACE)
