"""``/healthz``: is the service up and its database reachable? The one route without a token."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import ServicesDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "the database does not answer"}},
)
def healthz(services: ServicesDep) -> JSONResponse:
    try:
        with services.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        body = Health(status="unavailable", database=f"{services.database.dialect}: {type(exc).__name__}")
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ok", database=services.database.dialect).model_dump())
