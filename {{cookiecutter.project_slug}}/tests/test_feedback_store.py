"""The feedback loop's store on SQLite and PostgreSQL: reports matched, kept once, suppressing; the outbox leased."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from {{ cookiecutter.package_name }}.feedback.events import BounceKind, DeliveryEvent, EventType
from {{ cookiecutter.package_name }}.feedback.settings import FeedbackSettings
from {{ cookiecutter.package_name }}.feedback.sink import FeedbackSink
from {{ cookiecutter.package_name }}.store import NotificationStore, open_engine

from .conftest import migrate

NOTIFICATION_ID = "6c5b4a3f2e1d40c9b8a7f6e5d4c3b2a1"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def event(type_: EventType, recipient: str, event_id: str, bounce: BounceKind | None = None) -> DeliveryEvent:
    return DeliveryEvent(
        type=type_,
        recipient=recipient,
        source="mailgun",
        occurred_at=datetime.now(UTC),
        notification_id=NOTIFICATION_ID,
        bounce=bounce,
        status="5.1.1" if bounce == BounceKind.HARD else "4.2.2",
        diagnostic="550 5.1.1 no such user" if bounce == BounceKind.HARD else "452 4.2.2 mailbox full",
        event_id=event_id,
    )


def test_reports_are_kept_once_suppress_and_fill_a_leased_outbox(database_url: str) -> None:
    migrate(database_url)
    settings = FeedbackSettings(
        suppression_soft_bounces=2,
        events_webhook_url="http://127.0.0.1:9/hooks",
        events_webhook_secret=SECRET,
    )

    async def scenario() -> None:
        store = NotificationStore(open_engine(database_url))
        try:
            recipients = ["Dead@example.com", "full@example.com", "ok@example.com"]
            content = {"to": recipients, "cc": [], "subject": "s", "body": "b", "format": "text"}
            await store.for_client("shop").add(NOTIFICATION_ID, content, recipients)
            sink = FeedbackSink(store, settings)
            hard = event(EventType.BOUNCED, "dead@example.com", "e1", BounceKind.HARD)
            stranger = event(EventType.DELIVERED, "stranger@example.com", "e2")
            matched = await asyncio.gather(sink.handle([hard, stranger]), sink.handle([hard]))
            assert list(matched) == [[hard], [hard]]
            soft = [event(EventType.BOUNCED, "full@example.com", f"s{n}", BounceKind.SOFT) for n in range(2)]
            await sink.handle(soft[:1])
            assert not await store.suppressions.is_suppressed("full@example.com")
            await sink.handle(soft[1:])
            await sink.handle([event(EventType.DELIVERED, "ok@example.com", "d1")])
            assert await store.suppressions.is_suppressed("DEAD@example.com")
            full = await store.suppressions.get("full@example.com")
            assert full is not None
            assert full.event is not None
            assert full.event["soft_bounces"] == 2
            history = await store.events.history(NOTIFICATION_ID)
            assert [(row.recipient, row.type) for row in history] == [
                ("dead@example.com", "bounced"),
                ("full@example.com", "bounced"),
                ("full@example.com", "bounced"),
                ("ok@example.com", "delivered"),
            ]

            claimed = await store.outbox.claim(10, lease=60)
            assert sorted(row.type for row in claimed) == [*["recipient.bounced"] * 3, "recipient.delivered"]
            assert {row.payload["data"]["client"] for row in claimed} == {"shop"}
            assert await store.outbox.claim(10, lease=60) == []  # leased
            first, *rest = claimed
            past = datetime.now(UTC) - timedelta(seconds=1)
            assert await store.outbox.finish(first, delivered=False, error="answered 503", retry_at=past)
            assert not await store.outbox.finish(first, delivered=True)  # its lease is gone
            [again] = await store.outbox.claim(10, lease=60)
            assert (again.id, again.attempt_count) == (first.id, 2)
            for row in [again, *rest]:
                assert await store.outbox.finish(row, delivered=True)
            assert await store.outbox.counts() == {"pending": 0, "delivered": 4, "failed": 0}

            await store.purge(body_retention=0, row_retention=0, key_ttl=86400)  # ROW_RETENTION reached
            assert await store.events.history(NOTIFICATION_ID) == []
            assert await store.outbox.counts() == {"pending": 0, "delivered": 0, "failed": 0}
            assert await store.suppressions.is_suppressed("dead@example.com")  # the list is kept
        finally:
            await store.aclose()

    asyncio.run(scenario())
