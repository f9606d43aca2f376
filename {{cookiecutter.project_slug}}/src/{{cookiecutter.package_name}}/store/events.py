"""Per-recipient history: what happened to each recipient of each notification, in time order.

The SMTP server's refusal of a recipient (`refused`, or `bounced` for an address that does not
exist), a recipient skipped because it is suppressed (`suppressed`), and what providers and
bounce reports tell later (`delivered`, `bounced`, `complained`, `deferred`) are rows of
`recipient_events` (what the server accepted is in the notification's attempts). A report seen
twice (a provider retrying) has the same `(source, event_id)` and is kept once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Index, Insert, Integer, String, Table, Text, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, NotificationRecord, UtcDateTime
from .outbox import OutgoingEventRecord
from .suppressions import SuppressionRecord, normalize

__all__ = [
    "EVENTS",
    "OUTBOX",
    "SUPPRESSIONS",
    "OutgoingEventRecord",
    "RecipientEventRecord",
    "RecipientEvents",
    "Recipients",
    "Report",
    "SuppressionRecord",
    "event_row",
    "insert_new",
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


@dataclass(frozen=True)
class Report:
    """A reported event matched to its notification, to store: its `event` row, the suppression `reason` it
    brings at once (hard bounce, complaint), whether it is a `soft` bounce (counted), its `outbox` row."""

    event: dict[str, Any]
    reason: str | None = None
    soft: bool = False
    outbox: dict[str, Any] | None = None


async def purge_feedback(session: AsyncSession, before: datetime) -> None:
    """Delete the recipient events and the finished outgoing events older than `before` (ROW_RETENTION);
    the suppression list is kept."""
    await session.execute(delete(EVENTS).where(EVENTS.c.occurred_at <= before))
    await session.execute(delete(OUTBOX).where(OUTBOX.c.status != "pending", OUTBOX.c.created_at <= before))


def suppression_row(report: Report, reason: str, soft_bounces: int) -> dict[str, Any]:
    """The suppression of the address of `report` for `reason`, describing the event that put it there."""
    event = report.event
    described = {key: event[key] for key in ("source", "type", "notification_id", "status", "diagnostic")}
    if report.soft:
        described["soft_bounces"] = soft_bounces
    return {
        "address": event["recipient"],
        "reason": reason,
        "event": described,
        "created_at": event["occurred_at"],
    }


@dataclass(frozen=True)
class Recipients:
    """Who a notification is for: its client and its recipients, normalized."""

    client: str
    addresses: frozenset[str]


class RecipientEvents:
    """The recipient events: store reports, read a notification's history (`write_lock`: the store's)."""

    def __init__(self, engine: AsyncEngine, write_lock: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self._engine = engine
        self._write_lock = write_lock

    async def record(
        self,
        notification_ids: Collection[str],
        build: Callable[[dict[str, Recipients]], list[Report]],
        soft_bounces: int,
        window: float,
    ) -> tuple[list[Report], list[bool]]:
        """In one transaction: look up the recipients of those of `notification_ids` that exist, have `build`
        make the reports of the events they match, store them. Returns the reports and, for each, whether it
        was new (a report seen before is skipped with its suppression and outgoing event). A soft bounce
        suppresses its address (hard_bounce) once it is the `soft_bounces`th within `window` seconds (0: never).
        """
        async with self._write_lock, self._engine.begin() as connection:
            reports = build(await self._recipients_of(connection, notification_ids))
            if not reports:
                return [], []
            new = await self._new(connection, reports)
            rows = [report.event for report, added in zip(reports, new, strict=True) if added]
            dialect = connection.dialect.name
            if rows:
                await connection.execute(insert_new(EVENTS, dialect), rows)
            suppress, outbox = [], []
            for report, added in zip(reports, new, strict=True):
                if not added:
                    continue
                reason = report.reason
                recipient = report.event["recipient"]
                if (
                    reason is None
                    and report.soft
                    and soft_bounces
                    and await self.soft_bounces(connection, recipient, window) >= soft_bounces
                ):
                    reason = "hard_bounce"
                if reason is not None:
                    suppress.append(suppression_row(report, reason, soft_bounces))
                if report.outbox is not None:
                    outbox.append(report.outbox)
            if suppress:
                await connection.execute(insert_new(SUPPRESSIONS, dialect), suppress)
            if outbox:
                await connection.execute(insert(OUTBOX), outbox)
        return reports, new

    @staticmethod
    async def _recipients_of(
        connection: AsyncConnection, notification_ids: Collection[str]
    ) -> dict[str, Recipients]:
        """The recipients of those of `notification_ids` that exist, whichever client's."""
        table = NotificationRecord
        query = select(table.id, table.client, table.content, table.accepted, table.refused, table.pending)
        found: dict[str, Recipients] = {}
        ids = sorted(notification_ids)
        for start in range(0, len(ids), 500):
            for row in await connection.execute(query.where(table.id.in_(ids[start : start + 500]))):
                content = row.content or {}
                given = [
                    *content.get("to", []),
                    *content.get("cc", []),
                    *row.accepted,
                    *row.refused,
                    *row.pending,
                ]
                found[row.id] = Recipients(row.client, frozenset(normalize(address) for address in given))
        return found

    @staticmethod
    async def _new(connection: AsyncConnection, reports: Sequence[Report]) -> list[bool]:
        """For each report, whether its (source, event_id) is neither stored nor earlier in `reports`."""
        keys = {(r.event["source"], r.event["event_id"]) for r in reports if r.event["event_id"] is not None}
        stored: set[tuple[str, str]] = set()
        for source in {source for source, _ in keys}:
            ids = sorted(event_id for each, event_id in keys if each == source)
            query = select(EVENTS.c.event_id).where(EVENTS.c.source == source, EVENTS.c.event_id.in_(ids))
            stored |= {(source, event_id) for event_id in await connection.scalars(query)}
        new = []
        for report in reports:
            key = (report.event["source"], report.event["event_id"])
            new.append(key[1] is None or key not in stored)
            stored.add(key)
        return new

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
