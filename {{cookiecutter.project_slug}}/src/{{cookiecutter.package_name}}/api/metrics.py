"""GET /metrics: the Prometheus text format, for a scraper holding one of API_KEYS (never public)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from ..observability.metrics import exposition
from ..store import Backlog, utcnow
from .deps import StoreDep, authenticated_client

logger = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


class BacklogCollector:
    """The store's backlog, as read for one scrape (by the process answering it, never summed)."""

    def __init__(self, backlog: Backlog) -> None:
        self._backlog = backlog

    def collect(self) -> Iterable[Metric]:
        counts = GaugeMetricFamily(
            "notifications_backlog",
            "Notifications not finished, by status (from the store).",
            labels=["status"],
        )
        for status, count in self._backlog.counts.items():
            counts.add_metric([str(status)], count)
        oldest = self._backlog.oldest_due
        age = 0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0.0)
        yield counts
        yield GaugeMetricFamily(
            "notifications_scheduled",
            "Queued notifications not due yet: scheduled with send_at, or held back by a sending limit.",
            value=self._backlog.scheduled,
        )
        yield GaugeMetricFamily(
            "notifications_oldest_due_age_seconds",
            "Seconds the oldest due notification (queued or retrying) has waited; 0 when none.",
            value=age,
        )


@router.get(
    "/metrics",
    dependencies=[Depends(authenticated_client)],
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
    collectors = []
    try:
        collectors.append(BacklogCollector(await store.backlog()))
    except Exception:  # the store is away: serve the rest; the backlog series go missing (alert on absent())
        logger.warning("metrics: could not read the backlog from the store", exc_info=True)
    return Response(exposition(collectors), media_type=CONTENT_TYPE_LATEST)
