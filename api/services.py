"""What the app works with, opened once per app (never on import): the stores, the engine that
runs gates, the live-event plumbing and the metrics."""

from dataclasses import dataclass

from starlette.requests import Request

from api.engine import EngineFactory, libvirt_engine
from api.live import EventBridge, RunWakeups
from api.prometheus import TestbedMetrics
from api.run_service import ReconcileReport, RunService
from orchestrator.config import Settings
from orchestrator.core.records import RunEvent
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
    run_service: RunService
    wakeups: RunWakeups
    bridge: EventBridge | None = None

    @classmethod
    def open(cls, settings: Settings, make_engine: EngineFactory = libvirt_engine) -> "Services":
        """Connect to the store and migrate it; sweep what a killed upload left behind. The engine
        is made and opened later (``start_engine``), in the app's lifespan."""
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
        matrices = MatrixStore(database)
        run_service = RunService(settings, runs, candidates, matrices, make_engine)
        return cls(
            settings=settings,
            database=database,
            runs=runs,
            candidates=candidates,
            matrices=matrices,
            tokens=TokenStore(database),
            metrics=TestbedMetrics(runs, run_service.pool_status),
            run_service=run_service,
            wakeups=RunWakeups(),
        )

    @property
    def upload_limit_bytes(self) -> int:
        return self.settings.upload_limit_mib << 20

    def start_engine(self) -> ReconcileReport:
        """Open the engine, follow its events, and reconcile the runs a dead process left."""
        engine = self.run_service.open_engine()
        if engine is None:
            return ReconcileReport()
        self.bridge = EventBridge(engine.bus, self._on_event)
        self.bridge.start()
        return self.run_service.reconcile()

    def _on_event(self, event: RunEvent) -> None:
        self.wakeups.notify(event.run_id)
        self.metrics.observe(event)

    def stop_engine(self) -> None:
        self.run_service.stop()
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None

    def close(self) -> None:
        self.database.close()


def services_of(request: Request) -> Services:
    """The app's services (set by ``create_app``)."""
    services: Services = request.app.state.services
    return services
