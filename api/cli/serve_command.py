"""``testbed serve``: the REST API (and later the status page) with uvicorn."""

from enum import StrEnum
from typing import Annotated

import typer

from api.cli.common import errors_as_exit_codes, settings


class LogLevel(StrEnum):
    """uvicorn's log levels."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8080,
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn's log level.")] = LogLevel.INFO,
) -> None:
    """Serve the REST API under /api/v1 (OpenAPI at /api/v1/openapi.json), /healthz and /metrics."""
    import uvicorn  # noqa: PLC0415 - the other commands need no web server

    from api.app import create_app  # noqa: PLC0415

    with errors_as_exit_codes():
        app = create_app(settings())  # the store is opened and migrated before a port is taken
    # An open event stream must not hold a shutdown up: streams are resumable, clients reconnect.
    uvicorn.run(
        app, host=host, port=port, log_level=str(log_level), proxy_headers=False, timeout_graceful_shutdown=10
    )
