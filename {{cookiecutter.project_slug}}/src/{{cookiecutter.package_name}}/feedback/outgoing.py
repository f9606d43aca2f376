"""Outgoing events: each status change, from the store's outbox to EVENTS_WEBHOOK_URL, signed per Standard Webhooks.

Rows are written in the transaction of the change they report (`SendFeedback.complete`, `FeedbackSink`).
`OutgoingEvents.run()` claims due rows with a lease, POSTs each (headers `webhook-id` = the row's id,
`webhook-timestamp`, `webhook-signature` = `v1,<HMAC-SHA256>` with EVENTS_WEBHOOK_SECRET), and marks it
delivered on a 2xx answer; otherwise it is due again after a doubling wait (EVENTS_RETRY_BACKOFF, at most
EVENTS_RETRY_BACKOFF_MAX), until EVENTS_MAX_ATTEMPTS. A receiver that is down loses nothing; a process
killed between the POST and its record sends that event once more, with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
from standardwebhooks import Webhook

from ..mail.core.backoff import backoff
from ..store import NotificationStore
from ..store.outbox import OutgoingEventRecord
from .metrics import feedback_metrics
from .settings import FeedbackSettings

__all__ = ["OutgoingEvents"]

logger = logging.getLogger(__name__)

BATCH = 32
"""Events claimed, and POSTed concurrently, at once."""
POLL_INTERVAL = 1.0
"""Seconds between looks at the outbox while nothing is due."""


class OutgoingEvents:
    """Delivers the outbox to EVENTS_WEBHOOK_URL until `stop()`; `client` is for tests."""

    def __init__(
        self,
        store: NotificationStore,
        settings: FeedbackSettings,
        *,
        metrics: bool = False,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if settings.events_webhook_url is None or settings.events_webhook_secret is None:
            raise ValueError("EVENTS_WEBHOOK_URL and EVENTS_WEBHOOK_SECRET are not set: no outgoing events")
        self._store = store
        self._settings = settings
        self._url = settings.events_webhook_url
        self._signer = Webhook(settings.events_webhook_secret.get_secret_value())
        self._client = client or httpx.AsyncClient(timeout=settings.events_webhook_timeout)
        self._owns_client = client is None
        self._lease = 2 * settings.events_webhook_timeout + 10
        self._metrics = feedback_metrics() if metrics else None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Deliver due events until `stop()`; a failing store is tried again after POLL_INTERVAL."""
        try:
            while not self._stopping.is_set():
                try:
                    claimed = await self._store.outbox.claim(BATCH, self._lease)
                except Exception:
                    logger.exception("outgoing events: could not claim events; trying again")
                    claimed = []
                results = await asyncio.gather(
                    *(self.deliver(event) for event in claimed), return_exceptions=True
                )
                for failure in (result for result in results if isinstance(result, Exception)):
                    logger.error(
                        "outgoing events: recording a delivery failed (%s); sent again after the lease",
                        failure,
                    )
                if len(claimed) < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), POLL_INTERVAL)
        finally:
            if self._owns_client:
                await self._client.aclose()

    def stop(self) -> None:
        """Make `run()` return once the events in hand are delivered or rescheduled."""
        self._stopping.set()

    async def deliver(self, event: OutgoingEventRecord) -> bool:
        """POST one claimed event and record the result; True when the receiver took it (2xx)."""
        body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(event.id, now, body),
        }
        try:
            response = await self._client.post(self._url, content=body.encode(), headers=headers)
            error = None if response.is_success else f"answered {response.status_code}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}".strip(": ")
        if error is None:
            outcome = "delivered"
            recorded = await self._store.outbox.finish(event, delivered=True)
        elif event.attempt_count >= self._settings.events_max_attempts:
            outcome = "failed"
            logger.error(
                "outgoing event %s (%s): given up after %d attempts (EVENTS_MAX_ATTEMPTS); last: %s",
                event.id,
                event.type,
                event.attempt_count,
                error,
            )
            recorded = await self._store.outbox.finish(event, delivered=False, error=error)
        else:
            outcome = "retried"
            delay = backoff(
                event.attempt_count,
                self._settings.events_retry_backoff,
                self._settings.events_retry_backoff_max,
            )
            logger.warning(
                "outgoing event %s (%s) to EVENTS_WEBHOOK_URL: %s; attempt %d, next in %.3g s",
                event.id,
                event.type,
                error,
                event.attempt_count,
                delay,
            )
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            recorded = await self._store.outbox.finish(event, delivered=False, error=error, retry_at=retry_at)
        if self._metrics is not None:
            self._metrics.outgoing.labels(outcome).inc()
        if not recorded:
            logger.warning("outgoing event %s: lease lost while delivering; another sender has it", event.id)
        return error is None
