"""The service with the simulated engine, for uvicorn: ``uvicorn --factory tests.api.simulated_app:create``.

Settings come from the environment (``TESTBED_*``), as for ``testbed serve``; only the engine
differs (``tests.api.simulated_engine``).
"""

from fastapi import FastAPI

from api.app import create_app
from orchestrator.config import load_settings
from tests.api.simulated_engine import SimulatedEngine


def create() -> FastAPI:
    return create_app(load_settings(), make_engine=SimulatedEngine)
