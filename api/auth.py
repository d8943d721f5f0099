"""Bearer tokens: every route but /healthz needs one; each route names the least role it needs.

401 (with ``WWW-Authenticate: Bearer``) when the token is missing, unknown or revoked; 403 when
it is genuine but its role is below the route's. Tokens are verified against their stored hash in
constant time (``orchestrator.store.tokens``).
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.services import services_of
from orchestrator.store import FieldProblem, Role, TokenRecord

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token (`testbed tokens create --name N --role viewer|submitter|admin`).",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, [FieldProblem("header", "authorization", message)], _CHALLENGE)


def authenticated(needed: Role) -> Callable[..., TokenRecord]:
    """A dependency: the request's token, if it is genuine, active, and at least ``needed``."""

    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> TokenRecord:
        if credentials is None:
            raise _unauthorized("an API token is needed: Authorization: Bearer <token>")
        token = services_of(request).tokens.verify(credentials.credentials)
        if token is None:
            raise _unauthorized("the API token is unknown or revoked")
        if not token.role.allows(needed):
            raise ApiError(
                403,
                f"this needs the {needed} role; token {token.name!r} has the {token.role} role",
                [FieldProblem("header", "authorization", f"role {token.role} is below {needed}")],
            )
        return token

    dependency.__name__ = f"{needed}_token"
    return dependency
