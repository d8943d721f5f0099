"""The routes' dependencies, as ``Annotated`` aliases: a handler names what it needs by type."""

from typing import Annotated

from fastapi import Depends, Query

from api.auth import authenticated
from api.services import Services, services_of
from orchestrator.store import CandidateStore, MatrixStore, Role, SqlRunStore, TokenRecord, TokenStore

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000  # far beyond any real listing, far within every database's integers


def _runs(services: Annotated[Services, Depends(services_of)]) -> SqlRunStore:
    return services.runs


def _candidates(services: Annotated[Services, Depends(services_of)]) -> CandidateStore:
    return services.candidates


def _matrices(services: Annotated[Services, Depends(services_of)]) -> MatrixStore:
    return services.matrices


def _tokens(services: Annotated[Services, Depends(services_of)]) -> TokenStore:
    return services.tokens


ServicesDep = Annotated[Services, Depends(services_of)]
RunStoreDep = Annotated[SqlRunStore, Depends(_runs)]
CandidatesDep = Annotated[CandidateStore, Depends(_candidates)]
MatricesDep = Annotated[MatrixStore, Depends(_matrices)]
TokensDep = Annotated[TokenStore, Depends(_tokens)]

Viewer = Annotated[TokenRecord, Depends(authenticated(Role.VIEWER))]
Submitter = Annotated[TokenRecord, Depends(authenticated(Role.SUBMITTER))]
Admin = Annotated[TokenRecord, Depends(authenticated(Role.ADMIN))]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
