"""Co-installed products: other software the fleet runs beside the sensor (DLP, AV, VPN).

A product lives in a directory of the products directory (``products_dir`` in the settings) with a
``product.yaml``; its package follows the same installer contract as a Linux sensor package (a
``.tar.gz`` with one top directory holding ``install.sh``). It is installed, and booted into,
before the candidate — the 2019 incident was a sensor and a DLP product that crashed together.
"""

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.candidate import sha256_of
from orchestrator.errors import ConfigurationError, describe_validation_error

MANIFEST_NAME = "product.yaml"
_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class ProductManifest(BaseModel):
    """product.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    version: str = Field(min_length=1, max_length=64)
    os_family: str = Field(min_length=1)
    package: str = Field(min_length=1, description="the installer package, relative to product.yaml")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    install_args: list[str] = Field(default_factory=list)
    health_check: str | None = Field(None, min_length=1, max_length=4096)


class Product:
    """A verified product: its manifest and where its package is."""

    def __init__(self, manifest: ProductManifest, root: Path) -> None:
        self.manifest = manifest
        self.root = root

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def package_path(self) -> Path:
        return (self.root / self.manifest.package).resolve()


def load_product(manifest_path: Path) -> Product:
    try:
        data = yaml.safe_load(manifest_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"product {manifest_path}: {exc}") from exc
    try:
        manifest = ProductManifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(
            f"product {manifest_path} is invalid:\n{describe_validation_error(exc)}"
        ) from exc
    product = Product(manifest, manifest_path.parent.resolve())
    package = product.package_path
    if not package.is_relative_to(product.root):
        raise ConfigurationError(
            f"product {manifest_path}: package {manifest.package!r} points outside its directory"
        )
    if not package.is_file():
        raise ConfigurationError(f"product {manifest_path}: package not found: {package}")
    if (actual := sha256_of(package)) != manifest.sha256:
        raise ConfigurationError(
            f"product {manifest_path}: sha256: {manifest.package} has {actual}, "
            f"the manifest pins {manifest.sha256}"
        )
    return product


def load_products(products_dir: Path) -> dict[str, Product]:
    """Every product registered under ``products_dir`` (one directory each), verified."""
    if not products_dir.is_dir():
        return {}
    products: dict[str, Product] = {}
    for manifest_path in sorted(products_dir.glob(f"*/{MANIFEST_NAME}")):
        product = load_product(manifest_path)
        if product.name in products:
            raise ConfigurationError(
                f"product {product.name!r} is registered twice (again in {manifest_path})"
            )
        products[product.name] = product
    return products
