"""The catalog of built golden images: name, OS family, version, kernel, digest, files."""

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.core.plan import ImageFacts
from orchestrator.errors import InfrastructureError


class ImageRecord(BaseModel):
    """One built image, as the catalog remembers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    os_family: str
    os_version: str
    kernel: str
    digest: str
    directory: Path
    disk: Path
    kernel_image: Path
    initrd: Path
    kernel_cmdline: str
    built_at: float
    disk_bytes: int
    expected_outcome: str | None = None  # a control image: how every cell on it must end

    def facts(self) -> ImageFacts:
        return ImageFacts(
            name=self.name,
            os_family=self.os_family,
            os_version=self.os_version,
            kernel=self.kernel,
            digest=self.digest,
            expected_outcome=self.expected_outcome,
        )

    def files_present(self) -> bool:
        return all(path.is_file() for path in (self.disk, self.kernel_image, self.initrd))


class ImageCatalog:
    """A JSON file beside the images; written atomically so a crash never leaves half a catalog."""

    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir
        self.path = images_dir / "catalog.json"

    def records(self) -> dict[str, ImageRecord]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text())
            return {name: ImageRecord.model_validate(entry) for name, entry in raw.items()}
        except (OSError, ValueError, ValidationError) as exc:
            raise InfrastructureError(f"image catalog {self.path} is unreadable: {exc}") from exc

    def get(self, name: str) -> ImageRecord | None:
        return self.records().get(name)

    def usable(self) -> dict[str, ImageRecord]:
        """Records whose files are all still on disk."""
        return {name: record for name, record in self.records().items() if record.files_present()}

    def put(self, record: ImageRecord) -> None:
        records = self.records()
        records[record.name] = record
        self.images_dir.mkdir(parents=True, exist_ok=True)
        payload = {name: entry.model_dump(mode="json") for name, entry in sorted(records.items())}
        handle, temporary = tempfile.mkstemp(dir=self.images_dir, prefix=".catalog-", suffix=".json")
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2)
            stream.write("\n")
        Path(temporary).chmod(0o644)
        Path(temporary).replace(self.path)
