"""Every error as one JSON shape (``ErrorBody``), whoever raised it.

- ``ApiError``: what the routes raise (401, 403, 404, 415, ...);
- ``RejectedInputError`` (a ``ConfigurationError`` from the store): 422, 413 when too large;
- FastAPI's request validation: 422, reshaped so each problem names its location and field;
- Starlette's own HTTP errors (unknown route, wrong method): their status, our shape;
- the testbed's infrastructure trouble (the database is down): 503; its other errors are bugs: 500;
- anything else is a bug of ours: 500, logged with its traceback, the body saying no more.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorBody, Problem
from orchestrator.errors import ConfigurationError, InfrastructureError, TestbedError
from orchestrator.store import FieldProblem, RejectedInputError, TooLargeError, problems_from

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal",
    503: "unavailable",
}


class UnsupportedMediaError(RejectedInputError):
    """The request's Content-Type is not one the route reads (HTTP 415)."""


class ApiError(Exception):
    """An error a route answers with: a status, a code, a message, and the offending fields."""

    def __init__(
        self,
        status: int,
        message: str,
        problems: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, problems: Iterable[Problem] = (), headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(
        error=_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_")),
        message=message,
        problems=list(problems),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=dict(headers or {}))


def _validation_problems(errors: Sequence[Any]) -> list[Problem]:
    problems = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        problems.append(
            Problem(
                location=location[0] if location else "request",
                field=".".join(location[1:]),
                message=str(error.get("msg", "invalid")),
            )
        )
    return problems


async def _on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, map(Problem.of, exc.problems), exc.headers)


async def _on_configuration_error(_request: Request, exc: ConfigurationError) -> JSONResponse:
    status = 413 if isinstance(exc, TooLargeError) else 415 if isinstance(exc, UnsupportedMediaError) else 422
    title = getattr(exc, "title", None) or str(exc).splitlines()[0]
    return error_response(status, title, map(Problem.of, problems_from(exc, "body")))


async def _on_request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "the request is invalid", _validation_problems(exc.errors()))


async def _on_http_exception(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    # FastAPI answers 400 for a body it cannot even decode (e.g. JSON that is not UTF-8).
    problems = [Problem(location="body", field="", message=message)] if exc.status_code == 400 else []
    return error_response(exc.status_code, message, problems, headers=exc.headers)


async def _on_testbed_error(request: Request, exc: TestbedError) -> JSONResponse:
    if not isinstance(exc, InfrastructureError):
        log.error("%s %s: a bug of the testbed: %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(500, "internal error (it is logged on the server)")
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "the testbed cannot answer now: its infrastructure failed (logged on the server)"
    )


async def _on_unexpected(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, and uvicorn logs the traceback.
    return error_response(500, "internal error (it is logged on the server)")


def install_error_handlers(app: FastAPI) -> None:
    # Order does not matter: Starlette picks the handler of the nearest class in the exception's MRO.
    app.exception_handler(ApiError)(_on_api_error)
    app.exception_handler(ConfigurationError)(_on_configuration_error)
    app.exception_handler(RequestValidationError)(_on_request_validation)
    app.exception_handler(StarletteHTTPException)(_on_http_exception)
    app.exception_handler(TestbedError)(_on_testbed_error)
    app.exception_handler(Exception)(_on_unexpected)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route may answer with (all with ``ErrorBody``)."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}
