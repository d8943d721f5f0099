"""``testbed serve``: the REST API (and later the status page) with uvicorn."""

from typing import Annotated

import typer

from api.cli.common import errors_as_exit_codes, settings


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8080,
    fd: Annotated[
        int | None,
        typer.Option(
            help="Serve on this already bound listening socket (socket activation); overrides host/port."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the REST API under /api/v1 (OpenAPI at /api/v1/openapi.json), /healthz and /metrics."""
    import uvicorn  # noqa: PLC0415 - the other commands need no web server

    from api.app import create_app  # noqa: PLC0415

    with errors_as_exit_codes():
        app = create_app(settings())  # the store is opened and migrated before a port is taken
    uvicorn.run(app, host=host, port=port, fd=fd, log_level=log_level, proxy_headers=False)
