"""Where delivery events go: matched to their notification and recipient, stored, acted upon.

`FeedbackSink` takes the events of a provider's webhook request (`await sink(events)`, the route's
`EventSink`) and of a bounce message (`await sink.handle(events)`, the poller's `EventHandler`). Each
event is matched by the notification id its source echoed back (provider metadata, VERP), else by the
returned Message-ID (`<id@domain>`, as the service writes it); an event that matches no notification,
or a recipient the notification does not have, is counted and dropped (the webhook still answers 2xx,
so the provider stops retrying). A matched one becomes a recipient event; a hard bounce or a
complaint suppresses the address at once, a soft bounce once it is the SUPPRESSION_SOFT_BOUNCES-th
within the window; delivered, bounced and complained become outgoing events when EVENTS_WEBHOOK_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

from ..store import NotificationStore, Reason, normalize
from ..store.events import Recipients, Report, event_row
from ..store.outbox import outbox_row
from ..store.repository import GroupCommit
from .events import BounceKind, DeliveryEvent, EventType
from .metrics import feedback_metrics
from .settings import FeedbackSettings

__all__ = ["FeedbackSink", "notification_id_of"]

logger = logging.getLogger(__name__)

NOTIFICATION_ID = re.compile(r"[0-9a-f]{32}")
MESSAGE_ID = re.compile(r"<?([0-9a-f]{32})@[^>\s]+>?")
OUTGOING = {EventType.DELIVERED, EventType.BOUNCED, EventType.COMPLAINED}


def notification_id_of(event: DeliveryEvent) -> str | None:
    """The notification `event` is about: the id its source echoed back, else the one in its Message-ID."""
    if event.notification_id and NOTIFICATION_ID.fullmatch(event.notification_id.lower()):
        return event.notification_id.lower()
    found = MESSAGE_ID.fullmatch((event.message_id or "").strip().lower())
    return found[1] if found else None


class FeedbackSink:
    """Matches, stores and acts on delivery events (see the module's docstring)."""

    def __init__(
        self, store: NotificationStore, settings: FeedbackSettings, *, metrics: bool = False
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = feedback_metrics() if metrics else None
        self._batches: GroupCommit[DeliveryEvent] = GroupCommit(self._record)

    async def __call__(self, events: Sequence[DeliveryEvent]) -> None:
        """Record the events of one webhook request."""
        await self.handle(events)

    async def handle(self, events: Sequence[DeliveryEvent]) -> list[DeliveryEvent]:
        """Record `events`; returns those matched to a notification (stored now or before).

        Events of requests that arrive while a batch is being stored share the next one (one look-up
        and one transaction for all), as a provider posts many requests at once."""
        flags = await asyncio.gather(*(self._batches.submit(event) for event in events))
        return [event for event, matched in zip(events, flags, strict=True) if matched]

    async def _record(self, events: list[DeliveryEvent]) -> list[bool]:
        """Match and store one batch of events; for each, whether it matched a notification."""
        ids = {found for found in map(notification_id_of, events) if found}
        matched: list[bool] = []

        def build(known: dict[str, Recipients]) -> list[Report]:
            matched.clear()
            reports = []
            for event in events:
                notification_id = notification_id_of(event)
                recipients = known.get(notification_id) if notification_id else None
                found = recipients is not None and normalize(event.recipient) in recipients.addresses
                matched.append(found)
                if found and notification_id is not None and recipients is not None:
                    reports.append(self._report(event, notification_id, recipients))
            return reports

        settings = self._settings
        reports, new = await self._store.events.record(
            ids, build, settings.suppression_soft_bounces, settings.suppression_soft_bounce_window
        )
        for event, found in zip(events, matched, strict=True):
            if self._metrics is not None:
                self._metrics.events_received.labels(event.source, str(event.type)).inc()
            if not found:
                self._unmatched(event, notification_id_of(event))
        for report, added in zip(reports, new, strict=True):
            if added and report.reason:
                logger.info(
                    "suppression list: %s added (%s) after a %s report",
                    report.event["recipient"],
                    report.reason,
                    report.event["source"],
                )
        return matched

    def _report(self, event: DeliveryEvent, notification_id: str, recipients: Recipients) -> Report:
        row = event_row(
            notification_id,
            event.recipient,
            str(event.type),
            event.source,
            occurred_at=event.occurred_at,
            bounce=str(event.bounce) if event.bounce else None,
            status=event.status,
            diagnostic=event.diagnostic,
            event_id=event.event_id or None,
        )
        reason = None
        if event.type == EventType.COMPLAINED:
            reason = Reason.COMPLAINT
        elif event.type == EventType.BOUNCED and event.bounce == BounceKind.HARD:
            reason = Reason.HARD_BOUNCE
        outbox = None
        if self._settings.events_enabled and event.type in OUTGOING:
            data = {
                "notification_id": notification_id,
                "client": recipients.client,
                "recipient": row["recipient"],
                "source": event.source,
                "occurred_at": event.occurred_at.isoformat(),
                "bounce": row["bounce"],
                "status": row["status"],
                "diagnostic": row["diagnostic"],
            }
            outbox = outbox_row(f"recipient.{event.type}", data)
        soft = event.type == EventType.BOUNCED and event.bounce == BounceKind.SOFT
        return Report(row, str(reason) if reason else None, soft, outbox)

    def _unmatched(self, event: DeliveryEvent, notification_id: str | None) -> None:
        if self._metrics is not None:
            self._metrics.unmatched.labels(event.source).inc()
        logger.info(
            "feedback: a %s %s event matches no notification%s; dropped",
            event.source,
            event.type,
            f" (names {notification_id}, not with that recipient)" if notification_id else "",
        )
