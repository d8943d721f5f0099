"""One router per resource. ``API_ROUTERS`` go under /api/v1; ``ROOT_ROUTERS`` at the root.

The runs router (create, list, get, cancel, events over SSE) and evidence join ``API_ROUTERS``
when the engine is wired in.
"""

from fastapi import APIRouter

from api.routers import candidates, health, matrices, metrics, tokens

API_ROUTERS: list[APIRouter] = [candidates.router, matrices.router, tokens.router]
ROOT_ROUTERS: list[APIRouter] = [health.router, metrics.router]

__all__ = ["API_ROUTERS", "ROOT_ROUTERS"]
