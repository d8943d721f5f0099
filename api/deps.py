"""The routes' dependencies, as ``Annotated`` aliases: a handler names what it needs by type."""

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials

from api.auth import authenticated, bearer
from api.run_service import RunService
from api.services import Services, services_of
from orchestrator.store import CandidateStore, MatrixStore, Role, SqlRunStore, TokenRecord, TokenStore

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000  # far beyond any real listing, far within every database's integers

SESSION_COOKIE = "testbed_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})

session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description="The status page's session (set by logging in at /login with a token); "
    "accepted for reading only.",
)


def _runs(services: Annotated[Services, Depends(services_of)]) -> SqlRunStore:
    return services.runs


def _candidates(services: Annotated[Services, Depends(services_of)]) -> CandidateStore:
    return services.candidates


def _matrices(services: Annotated[Services, Depends(services_of)]) -> MatrixStore:
    return services.matrices


def _tokens(services: Annotated[Services, Depends(services_of)]) -> TokenStore:
    return services.tokens


def _run_service(services: Annotated[Services, Depends(services_of)]) -> RunService:
    return services.run_service


_viewer_by_header = authenticated(Role.VIEWER)


def _reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[str | None, Depends(session_cookie)],
) -> TokenRecord:
    """A viewer's token from the Authorization header, or — for reading only — from the status
    page's session cookie (a browser's EventSource and links cannot send a header; a cookie never
    authorizes a change, so a forged cross-site request can change nothing)."""
    if credentials is None and session and request.method in SAFE_METHODS:
        token = services_of(request).tokens.verify(session)
        if token is not None:
            return token
    return _viewer_by_header(request, credentials)


ServicesDep = Annotated[Services, Depends(services_of)]
RunStoreDep = Annotated[SqlRunStore, Depends(_runs)]
RunServiceDep = Annotated[RunService, Depends(_run_service)]
CandidatesDep = Annotated[CandidateStore, Depends(_candidates)]
MatricesDep = Annotated[MatrixStore, Depends(_matrices)]
TokensDep = Annotated[TokenStore, Depends(_tokens)]

Viewer = Annotated[TokenRecord, Depends(authenticated(Role.VIEWER))]
Reader = Annotated[TokenRecord, Depends(_reader)]
Submitter = Annotated[TokenRecord, Depends(authenticated(Role.SUBMITTER))]
Admin = Annotated[TokenRecord, Depends(authenticated(Role.ADMIN))]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
