"""``/metrics``: Prometheus text; a viewer token is needed like everywhere else."""

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ServicesDep, Viewer
from api.errors import documented
from api.prometheus import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"},
        **documented(401, 403, 503),
    },
)
def metrics(services: ServicesDep, _token: Viewer) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
