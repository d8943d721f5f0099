"""The catalog of built golden images: name, OS family, version, kernel, digest, files.

An image boots one of two ways: Linux images directly (QEMU loads the record's kernel and initrd),
Windows images from UEFI firmware (OVMF with a per-domain copy of the record's variable store,
Secure Boot and a TPM where the image was installed with them). Catalogs written before the
firmware fields existed load unchanged: the fields default to a direct-boot image.
"""

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.adapters.atomic_file import replace_file
from orchestrator.core.plan import ImageFacts
from orchestrator.errors import ConfigurationError, InfrastructureError


class ImageRecord(BaseModel):
    """One built image, as the catalog remembers it."""

    # The JSON keys stay ``kernel_image``/``initrd`` (older catalogs, other readers); as attributes
    # those names are the direct-boot files and insist on being there (see the properties).
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    name: str
    kind: str
    os_family: str
    os_version: str
    kernel: str
    digest: str
    directory: Path
    disk: Path
    boot_kernel: Path | None = Field(None, alias="kernel_image")  # direct kernel boot only
    boot_initrd: Path | None = Field(None, alias="initrd")
    kernel_cmdline: str = ""
    built_at: float
    disk_bytes: int
    expected_outcome: str | None = None  # a control image: how every cell on it must end
    secure_boot: bool = False  # UEFI Secure Boot with Microsoft's keys (OVMF's .ms build)
    tpm: bool = False  # the image was installed with a TPM 2.0 and expects one
    nvram_template: Path | None = None  # the build's UEFI variable store; every domain starts from a copy
    guest_username: str | None = None  # the account the guest channel logs in with (Windows: WinRM)
    guest_password: str | None = None  # a lab password on an isolated network, as in the definition

    @model_validator(mode="after")
    def _boots_one_way(self) -> "ImageRecord":
        if (self.boot_kernel is None) != (self.boot_initrd is None):
            raise ValueError(f"image {self.name}: kernel_image and initrd go together")
        if self.boot_kernel is not None and self.nvram_template is not None:
            raise ValueError(f"image {self.name}: a direct kernel boot has no UEFI nvram_template")
        return self

    @property
    def direct_boot(self) -> bool:
        """QEMU loads the kernel itself; otherwise the image boots from UEFI firmware."""
        return self.boot_kernel is not None

    @property
    def kernel_image(self) -> Path:
        """The kernel of a direct-boot image; asking a firmware-booted image for one is a mistake."""
        if self.boot_kernel is None:
            raise ConfigurationError(f"image {self.name} boots from UEFI firmware: it has no kernel_image")
        return self.boot_kernel

    @property
    def initrd(self) -> Path:
        if self.boot_initrd is None:
            raise ConfigurationError(f"image {self.name} boots from UEFI firmware: it has no initrd")
        return self.boot_initrd

    def facts(self) -> ImageFacts:
        return ImageFacts(
            name=self.name,
            os_family=self.os_family,
            os_version=self.os_version,
            kernel=self.kernel,
            digest=self.digest,
            expected_outcome=self.expected_outcome,
        )

    def boot_files(self) -> tuple[Path, ...]:
        """Every file a domain of this image reads besides its overlay."""
        optional = (self.boot_kernel, self.boot_initrd, self.nvram_template)
        return (self.disk, *(path for path in optional if path is not None))

    def files_present(self) -> bool:
        return all(path.is_file() for path in self.boot_files())


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
        replace_file(self.path, json.dumps(payload, indent=2) + "\n")
