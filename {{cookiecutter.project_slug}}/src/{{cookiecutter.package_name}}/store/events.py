"""Per-recipient history: what happened to each recipient of each notification, in time order.

The SMTP server's refusal of a recipient (`refused`, or `bounced` for an address that does not
exist), a recipient skipped because it is suppressed (`suppressed`), and what providers and
bounce reports tell later (`delivered`, `bounced`, `complained`, `deferred`) are rows of
`recipient_events` (what the server accepted is in the notification's attempts). A report seen
twice (a provider retrying) has the same `(source, event_id)` and is kept once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Index, Insert, Integer, String, Table, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime
from .outbox import OutgoingEventRecord
from .suppressions import SuppressionRecord, normalize

__all__ = [
    "EVENTS",
    "OUTBOX",
    "SUPPRESSIONS",
    "OutgoingEventRecord",
    "RecipientEventRecord",
    "RecipientEvents",
    "SuppressionRecord",
    "event_row",
    "insert_new",
    "outbox_row",
]


class RecipientEventRecord(Base):
    """One event of one recipient (its normalized address) of one notification."""

    __tablename__ = "recipient_events"
    __table_args__ = (
        Index(None, "notification_id", "id"),
        Index(None, "recipient", "type", "occurred_at"),
        Index(None, "source", "event_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    notification_id: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))
    type: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    bounce: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    """The enhanced status code ("5.1.1"), or "" when none was given."""
    diagnostic: Mapped[str] = mapped_column(Text)
    """The server's reply or the report's diagnostic, one line."""
    event_id: Mapped[str | None] = mapped_column(String(255))
    """The report's own id at its source (None for the SMTP server's answers)."""


EVENTS: Table = Base.metadata.tables["recipient_events"]
SUPPRESSIONS: Table = Base.metadata.tables["suppressions"]
OUTBOX: Table = Base.metadata.tables["outgoing_events"]


def event_row(
    notification_id: str,
    recipient: str,
    type: str,
    source: str,
    *,
    occurred_at: datetime | None = None,
    bounce: str | None = None,
    status: str = "",
    diagnostic: str = "",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A row of `recipient_events` (the recipient normalized, the texts cut to their columns)."""
    return {
        "notification_id": notification_id,
        "recipient": normalize(recipient),
        "type": type,
        "source": source,
        "occurred_at": occurred_at or datetime.now(UTC),
        "bounce": bounce,
        "status": status[:16],
        "diagnostic": " ".join(diagnostic.split())[:2000],
        "event_id": event_id[:255] if event_id else None,
    }


def outbox_row(type: str, data: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
    """A row of `outgoing_events`: the event `type` with `data`, due now (its id is the `webhook-id`)."""
    now = at or datetime.now(UTC)
    payload = {"type": type, "timestamp": now.isoformat(), "data": data}
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": type,
        "payload": payload,
        "status": "pending",
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def insert_new(table: Table, dialect: str) -> Insert:
    """An INSERT of `table` that skips rows whose key or unique columns exist already (any dialect we run on)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def insert_rows(
    connection: AsyncConnection, rows: Sequence[tuple[Table, Sequence[dict[str, Any]]]]
) -> None:
    """Insert each group of rows into its table inside the caller's transaction, skipping duplicates."""
    for table, group in rows:
        if group:
            await connection.execute(insert_new(table, connection.dialect.name), list(group))


class RecipientEvents:
    """Reads of the recipient events: a notification's history, a recipient's recent soft bounces."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def history(self, notification_id: str) -> list[RecipientEventRecord]:
        """The events of `notification_id`, oldest first (as recorded)."""
        query = select(EVENTS).where(EVENTS.c.notification_id == notification_id).order_by(EVENTS.c.id)
        async with self._engine.connect() as connection:
            return [RecipientEventRecord(**row) for row in (await connection.execute(query)).mappings()]

    @staticmethod
    async def soft_bounces(connection: AsyncConnection, recipient: str, window: float) -> int:
        """How many soft bounces of `recipient` were recorded in the last `window` seconds (in `connection`'s
        transaction, so the one just inserted counts)."""
        table = EVENTS
        since = datetime.now(UTC) - timedelta(seconds=window)
        query = select(func.count()).where(
            table.c.recipient == normalize(recipient),
            table.c.type == "bounced",
            table.c.bounce == "soft",
            table.c.occurred_at >= since,
        )
        return int(await connection.scalar(query) or 0)
