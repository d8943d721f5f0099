"""Extra variables for the Windows playbooks (playbooks/windows/), built from plain data.

Pure, so a dry run can print exactly what a cell's playbooks would receive.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath
from typing import Any

STAGE_DIR = PureWindowsPath(r"C:\testbed\stage")
GUEST_EVIDENCE_DIR = PureWindowsPath(r"C:\testbed\evidence")
INSTALLED_RETURN_CODES = (0, 3010)  # 3010: installed, a reboot is required (the testbed reboots anyway)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


@dataclass(frozen=True)
class StagedArtifact:
    """One file the guest receives: where it is on the host, its name in the guest, its digest."""

    name: str
    kind: str
    source: Path
    sha256: str

    @property
    def file(self) -> str:
        return self.source.name


def _checked(artifacts: Sequence[StagedArtifact]) -> None:
    for artifact in artifacts:
        if not _SHA256.match(artifact.sha256):
            raise ValueError(f"artifact {artifact.name}: sha256 must be 64 lower-case hex digits")
        if not _FILE_NAME.match(artifact.file):
            raise ValueError(f"artifact {artifact.name}: {artifact.file!r} is no file name Windows accepts")
    folded = [artifact.file.lower() for artifact in artifacts]
    duplicates = sorted({name for name in folded if folded.count(name) > 1})
    if duplicates:
        # Windows file names ignore case: two artifacts would land in one staged file.
        raise ValueError(f"two artifacts share the file name {', '.join(duplicates)} (case-insensitively)")


def candidate_install_vars(
    artifacts: Sequence[StagedArtifact],
    sensor_package: StagedArtifact,
    installer_args: Sequence[str] = (),
    product_id: str | None = None,
) -> dict[str, Any]:
    """Variables of install_candidate.yml."""
    _checked(artifacts)
    if sensor_package not in artifacts:
        raise ValueError(f"the sensor package {sensor_package.name} is not among the staged artifacts")
    if sensor_package.source.suffix.lower() not in (".msi", ".exe"):
        raise ValueError(f"sensor package {sensor_package.file}: a Windows package is an .msi or an .exe")
    return {
        "testbed_stage_dir": str(STAGE_DIR),
        "testbed_artifacts": [
            {
                "name": artifact.name,
                "kind": artifact.kind,
                "file": artifact.file,
                "sha256": artifact.sha256,
                "src": str(artifact.source),
            }
            for artifact in artifacts
        ],
        "testbed_sensor_package": sensor_package.file,
        "testbed_installer_args": list(installer_args),
        "testbed_product_id": product_id or "",
        "testbed_expected_return_codes": list(INSTALLED_RETURN_CODES),
    }


def staged_path(artifact: StagedArtifact) -> str:
    """Where an artifact lands in the guest, e.g. for installer arguments naming a content file."""
    return str(STAGE_DIR / artifact.file)


def evidence_vars(run_started: datetime, evidence_dir: Path) -> dict[str, Any]:
    """Variables of collect_evidence.yml."""
    moment = run_started.astimezone(UTC)
    return {
        "testbed_run_started": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "testbed_run_started_epoch": moment.timestamp(),
        "testbed_guest_evidence_dir": str(GUEST_EVIDENCE_DIR),
        "testbed_evidence_dir": str(evidence_dir),
    }
