"""``/healthz``: is the service up, its database reachable, and can it run anything? The one route
without a token. Only the database decides the status code: a service whose hosts are down still
serves what is stored, and says why it refuses new runs."""

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
    engine = services.run_service
    try:
        with services.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        database, status, code = f"{services.database.dialect}: {type(exc).__name__}", "unavailable", 503
    else:
        database, status, code = services.database.dialect, "ok", 200
    body = Health(status=status, database=database, engine=engine.state.value, engine_problem=engine.problem)
    return JSONResponse(body.model_dump(), status_code=code)
