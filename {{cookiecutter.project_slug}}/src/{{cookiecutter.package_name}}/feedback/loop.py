"""The feedback loop of a running service: provider webhooks, the bounce mailbox poller, outgoing events.

`FeedbackLoop(settings, store)` is made by the app's lifespan: `webhooks` and `sink` serve
`POST /webhooks/{provider}`; `start()` starts the bounce poller when BOUNCE_IMAP_URL is set and the
outgoing events' sender when EVENTS_WEBHOOK_URL is; `aclose()` stops both and closes the HTTP client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..observability.metrics import MetricsSettings
from ..store import NotificationStore
from .bounces import BouncePoller
from .outgoing import OutgoingEvents
from .sending import FeedbackContext
from .sink import FeedbackSink
from .webhooks import Webhooks

__all__ = ["FeedbackLoop"]

logger = logging.getLogger(__name__)


class LoopContext(FeedbackContext, Protocol):
    """The settings the loop reads (the service's `Settings` has them)."""

    @property
    def metrics(self) -> MetricsSettings: ...


class FeedbackLoop:
    """What the service runs to hear back after delivery, and to tell the app."""

    def __init__(self, settings: LoopContext, store: NotificationStore) -> None:
        counted = settings.metrics.enabled
        self.webhooks = Webhooks(settings.webhooks)
        self.sink = FeedbackSink(store, settings.feedback, metrics=counted)
        self._poller = BouncePoller(settings.bounces, self.sink.handle) if settings.bounces.mailbox else None
        self._interval = settings.bounces.poll_interval
        self._outgoing = (
            OutgoingEvents(store, settings.feedback, metrics=counted)
            if settings.feedback.events_enabled
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start reading the bounce mailbox and sending outgoing events, each if configured."""
        if self._poller is not None:
            self._tasks.append(asyncio.create_task(self._poller.run(), name="bounce-poller"))
            logger.info("bounce mailbox: reading it every %g s", self._interval)
        if self._outgoing is not None:
            self._tasks.append(asyncio.create_task(self._outgoing.run(), name="outgoing-events"))

    async def aclose(self) -> None:
        """Stop the poller and the sender (each finishes what it holds), close the HTTP client."""
        if self._poller is not None:
            self._poller.stop()
        if self._outgoing is not None:
            self._outgoing.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.aclose()
