"""The service with the simulated engine, for uvicorn: ``uvicorn --factory tests.api.simulated_app:create``.

Settings come from the environment (``TESTBED_*``), as for ``testbed serve``; only the engine
differs (``tests.api.simulated_engine``).
"""

from fastapi import FastAPI

from api.app import create_app
from orchestrator.config import Settings, load_settings
from orchestrator.errors import InfrastructureError
from orchestrator.store.runs import SqlRunStore
from tests.api.simulated_engine import SimulatedEngine

NO_HOST = "no libvirt host could be opened: local: Failed to connect socket (simulated)"


def create() -> FastAPI:
    return create_app(load_settings(), make_engine=SimulatedEngine)


class _EngineWithoutHosts(SimulatedEngine):
    """What opening the engine meets when libvirtd is down on every host."""

    def open(self) -> object:
        raise InfrastructureError(NO_HOST)


def create_without_hosts() -> FastAPI:
    """``uvicorn --factory tests.api.simulated_app:create_without_hosts``"""

    def make_engine(settings: Settings, store: SqlRunStore) -> _EngineWithoutHosts:
        return _EngineWithoutHosts(settings, store)

    return create_app(load_settings(), make_engine=make_engine)
