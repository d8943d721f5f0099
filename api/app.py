"""The FastAPI app: ``create_app(settings)`` builds it; importing this module configures nothing.

Routes live under /api/v1 (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs); /healthz and
/metrics sit at the root where probes and Prometheus look for them; the status page at / (its
files under /static).

The engine (libvirt hosts, the shared host pool) is opened in the app's lifespan, before the port
is taken, and runs a previous process left unfinished are reconciled then; at shutdown the runs
still in progress are canceled (their cells keep their evidence and tear their domains down).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.engine import EngineFactory, libvirt_engine
from api.errors import install_error_handlers
from api.routers import API_ROUTERS, PAGE_ROUTERS, ROOT_ROUTERS
from api.routers.matrices import MATRIX_SCHEMA_NAME
from api.routers.pages import STATIC_DIR
from api.services import Services
from orchestrator.config import Settings, load_settings
from orchestrator.core.matrix import MatrixSpec

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    make_engine: EngineFactory = libvirt_engine,
) -> FastAPI:
    """The app over ``services`` (or over stores opened from ``settings``, closed at shutdown,
    with an engine made by ``make_engine`` and opened at start-up)."""
    owned = services is None
    opened = services or Services.open(settings or load_settings(), make_engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        opened.wakeups.bind(asyncio.get_running_loop())
        if owned:
            await run_in_threadpool(opened.start_engine)
        try:
            yield
        finally:
            if owned:
                await run_in_threadpool(opened.stop_engine)
                opened.close()

    app = FastAPI(
        title="Endpoint Testbed",
        summary="A pre-release gate for endpoint security sensors",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = opened
    install_error_handlers(app)
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    for router in ROOT_ROUTERS:
        app.include_router(router)
    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _document_matrix_schema(app)
    return app


def _document_matrix_schema(app: FastAPI) -> None:
    """Put the matrix spec's JSON schema into the OpenAPI components (the matrix route reads its
    body itself, to accept YAML too, so FastAPI cannot know the schema)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            spec = MatrixSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec.pop("$defs", {}))
            components[MATRIX_SCHEMA_NAME] = spec
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
