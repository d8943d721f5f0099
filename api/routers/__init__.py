"""One router per resource. ``API_ROUTERS`` go under /api/v1; ``ROOT_ROUTERS`` at the root;
``PAGE_ROUTERS`` are the status page (HTML, not in the OpenAPI document)."""

from fastapi import APIRouter

from api.routers import candidates, events, evidence, health, matrices, metrics, pages, runs, tokens

API_ROUTERS: list[APIRouter] = [
    candidates.router,
    matrices.router,
    runs.router,
    events.router,
    evidence.router,
    tokens.router,
]
ROOT_ROUTERS: list[APIRouter] = [health.router, metrics.router]
PAGE_ROUTERS: list[APIRouter] = [pages.router]

__all__ = ["API_ROUTERS", "PAGE_ROUTERS", "ROOT_ROUTERS"]
