"""Settings: where state lives, which libvirt hosts to drive, the guest network.

Read from a YAML file (``--config`` or ``TESTBED_CONFIG``) and ``TESTBED_*`` environment
variables, which win. The defaults give one host, ``qemu:///system``, on this machine.
"""

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.errors import ConfigurationError, describe_validation_error


def default_state_dir() -> Path:
    """Root keeps state where libvirt's QEMU user can read it; others keep it in their home."""
    if os.geteuid() == 0:
        return Path("/var/lib/endpoint-testbed")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "endpoint-testbed"


class HostConfig(BaseModel):
    """One libvirt host the testbed may run cells on."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
    uri: str = "qemu:///system"
    max_cells: int | None = Field(None, ge=1, description="concurrent cells; default: the host's CPU count")
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    pool_dir: Path | None = Field(None, description="where overlays go on that host; default under state_dir")
    images_dir: Path | None = Field(None, description="where golden images are on that host; default local")
    log_dir: Path = Path("/var/log/libvirt/qemu")

    @property
    def is_local(self) -> bool:
        return "://" in self.uri and self.uri.split("://", 1)[1].startswith("/")


class Settings(BaseSettings):
    """Everything the orchestrator is configured with."""

    model_config = SettingsConfigDict(env_prefix="TESTBED_", env_nested_delimiter="__", extra="forbid")

    state_dir: Path = Field(default_factory=default_state_dir)
    hosts: list[HostConfig] = Field(default_factory=lambda: [HostConfig(name="local")])
    network_name: str = "endpoint-testbed"
    network_bridge: str = "tbbr0"
    network_cidr: str = "192.168.123.0/24"
    debian_mirror: str = "http://deb.debian.org/debian"
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the run store, e.g. postgresql+psycopg://user@host/db; "
        "default: SQLite (WAL) at <state_dir>/testbed.db",
    )
    upload_limit_mib: int = Field(512, ge=1, le=65536, description="largest candidate bundle accepted")
    upload_unpacked_limit_mib: int = Field(
        2048, ge=1, le=262144, description="largest total size of a bundle's files once unpacked"
    )
    upload_max_members: int = Field(1000, ge=1, le=100000, description="most entries a bundle may hold")
    products_dir: Path | None = Field(
        None,
        description="registered co-installed products (<dir>/<name>/product.yaml); default under state_dir",
    )
    signing_key: Path | None = Field(
        None, description="encrypted PKCS#8 key (testbed keys create) that signs every run's verdict"
    )
    signing_key_password_env: str = Field(
        "TESTBED_KEY_PASSWORD", description="environment variable holding the signing key's password"
    )
    verifier_id: str = Field("urn:endpoint-testbed:gate", min_length=1, description="who signs verdicts")
    trusted_release_keys: list[Path] = Field(
        default_factory=list, description="public keys whose candidate signatures are accepted"
    )
    require_signed_candidates: bool = Field(
        False, description="refuse (exit 3) any candidate not signed by a trusted release key"
    )

    @field_validator("hosts")
    @classmethod
    def _unique_hosts(cls, hosts: list[HostConfig]) -> list[HostConfig]:
        if not hosts:
            raise ValueError("at least one host is needed")
        names = [host.name for host in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique: {names}")
        return hosts

    @property
    def images_dir(self) -> Path:
        return self.state_dir / "images"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def products_path(self) -> Path:
        return self.products_dir or self.state_dir / "products"

    @property
    def candidates_dir(self) -> Path:
        return self.state_dir / "candidates"

    @property
    def database_file(self) -> Path:
        """Where the embedded SQLite run store lives when no ``database_url`` is set."""
        return self.state_dir / "testbed.db"

    def pool_dir(self, host: HostConfig) -> Path:
        return host.pool_dir or self.state_dir / "pool"

    def host_images_dir(self, host: HostConfig) -> Path:
        return host.images_dir or self.images_dir


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML file (if any), then environment, then explicit overrides."""
    path = config_file or (Path(os.environ["TESTBED_CONFIG"]) if os.environ.get("TESTBED_CONFIG") else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"config file {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"config file {path}: expected a mapping at the top level")
        data.update(loaded)
    try:
        from_environment = Settings()
        data.update({name: getattr(from_environment, name) for name in from_environment.model_fields_set})
        data.update(overrides)
        return Settings(**data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigurationError(f"invalid settings{where}:\n{describe_validation_error(exc)}") from exc
