"""What the app works with, opened once per app (never on import): the stores and the metrics."""

from dataclasses import dataclass

from starlette.requests import Request

from api.prometheus import TestbedMetrics
from orchestrator.config import Settings
from orchestrator.store import (
    BundleLimits,
    CandidateStore,
    Database,
    MatrixStore,
    SqlRunStore,
    TokenStore,
    database_url,
    open_database,
)


@dataclass
class Services:
    """The app's collaborators; ``request.app.state.services`` holds the one instance."""

    settings: Settings
    database: Database
    runs: SqlRunStore
    candidates: CandidateStore
    matrices: MatrixStore
    tokens: TokenStore
    metrics: TestbedMetrics

    @classmethod
    def open(cls, settings: Settings) -> "Services":
        """Connect to the store and migrate it; sweep what a killed upload left behind."""
        database = open_database(database_url(settings))
        runs = SqlRunStore(database)
        candidates = CandidateStore(
            database,
            settings.candidates_dir,
            BundleLimits(
                max_members=settings.upload_max_members,
                max_unpacked_bytes=settings.upload_unpacked_limit_mib << 20,
            ),
        )
        candidates.sweep_leftovers()
        return cls(
            settings=settings,
            database=database,
            runs=runs,
            candidates=candidates,
            matrices=MatrixStore(database),
            tokens=TokenStore(database),
            metrics=TestbedMetrics(runs),
        )

    @property
    def upload_limit_bytes(self) -> int:
        return self.settings.upload_limit_mib << 20

    def close(self) -> None:
        self.database.close()


def services_of(request: Request) -> Services:
    """The app's services (set by ``create_app``)."""
    services: Services = request.app.state.services
    return services
