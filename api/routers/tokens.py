"""``/api/v1/tokens``: API tokens, for admins only. A secret is shown once, when it is created."""

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import Admin, TokensDep
from api.errors import ApiError, documented
from api.schemas import TokenCreate, TokenCreated, TokenOut
from orchestrator.store import FieldProblem

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=documented(400, 401, 403, 422, 503))

TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="the token's public id")]


def _not_found(token_id: str) -> ApiError:
    return ApiError(404, f"no token {token_id}", [FieldProblem("path", "token_id", "no such token")])


@router.get("", response_model=list[TokenOut], summary="List tokens (revoked ones too)")
def list_tokens(tokens: TokensDep, _token: Admin) -> list[TokenOut]:
    return [TokenOut.of(record) for record in tokens.list_tokens()]


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token")
def create_token(body: TokenCreate, tokens: TokensDep, _token: Admin) -> TokenCreated:
    record, secret = tokens.create(body.name, body.role)
    return TokenCreated(token=TokenOut.of(record), secret=secret)


@router.get("/{token_id}", response_model=TokenOut, summary="One token", responses=documented(404))
def get_token(token_id: TokenId, tokens: TokensDep, _token: Admin) -> TokenOut:
    record = tokens.get(token_id)
    if record is None:
        raise _not_found(token_id)
    return TokenOut.of(record)


@router.delete("/{token_id}", response_model=TokenOut, summary="Revoke a token", responses=documented(404))
def revoke_token(token_id: TokenId, tokens: TokensDep, _token: Admin) -> TokenOut:
    record = tokens.revoke(token_id)
    if record is None:
        raise _not_found(token_id)
    return TokenOut.of(record)
