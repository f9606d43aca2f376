"""GET /metrics: the Prometheus text format, for a scraper holding one of API_KEYS (never public)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..observability.metrics import exposition
from .deps import StoreDep, require_api_key

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        401: {"description": "Missing or invalid API key"},
    },
)
async def metrics(store: StoreDep) -> Response:
    """Every metric of the service (all its processes with PROMETHEUS_MULTIPROC_DIR), with the backlog read now.

    Scrape it with `authorization: {type: Bearer, credentials: <key>}` in the Prometheus job.
    """
    return Response(await exposition(store), media_type=CONTENT_TYPE_LATEST)
