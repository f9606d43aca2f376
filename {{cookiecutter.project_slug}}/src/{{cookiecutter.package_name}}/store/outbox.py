"""The table of outgoing events: each status change of a notification, kept until the app's webhook took it.

A row is written in the transaction of the change it reports where the store can (see
`feedback.outgoing`), then delivered with a lease and capped backoff like mail; its `id` is the
`webhook-id` of every delivery attempt, so a receiver can drop repeats.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime

__all__ = ["DELIVERED", "FAILED", "PENDING", "Outbox", "OutgoingEventRecord", "outbox_row"]

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


class OutgoingEventRecord(Base):
    """One event for EVENTS_WEBHOOK_URL: `pending` until delivered (`delivered`) or given up (`failed`)."""

    __tablename__ = "outgoing_events"
    __table_args__ = (Index(None, "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempt_count: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


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


class Outbox:
    """The outgoing events as a queue: claim due ones with a lease, then record each delivery's result.

    Concurrent senders never hold the same event (PostgreSQL: SKIP LOCKED; SQLite: one writer); one
    whose sender died is claimed again once its lease expires, and sent again with the same id.
    """

    def __init__(self, engine: AsyncEngine, write_lock: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self._engine = engine
        self._write_lock = write_lock

    async def claim(self, limit: int, lease: float) -> list[OutgoingEventRecord]:
        """Lease up to `limit` due events for `lease` seconds (each claim counts as an attempt)."""
        now = datetime.now(UTC)
        table = OutgoingEventRecord
        due = and_(
            table.status == PENDING,
            table.next_attempt_at <= now,
            or_(table.lease_until.is_(None), table.lease_until < now),
        )
        candidates = (
            select(table.id)
            .where(due)
            .order_by(table.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(table)
            .where(table.id.in_(candidates), due)
            .values(
                lease_token=uuid.uuid4().hex,
                lease_until=now + timedelta(seconds=lease),
                attempt_count=table.attempt_count + 1,
            )
            .returning(*table.__table__.columns)
        )
        async with self._write_lock, self._engine.begin() as connection:
            return [OutgoingEventRecord(**row) for row in (await connection.execute(claim)).mappings()]

    async def finish(
        self,
        claimed: OutgoingEventRecord,
        *,
        delivered: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record a delivery of `claimed`: delivered, due again at `retry_at`, or (neither) given up.
        False if its lease was lost meanwhile."""
        now = datetime.now(UTC)
        status = DELIVERED if delivered else PENDING if retry_at is not None else FAILED
        values = {
            "status": status,
            "lease_token": None,
            "lease_until": None,
            "last_error": error,
            "next_attempt_at": retry_at if status == PENDING else None,
            "delivered_at": now if delivered else None,
        }
        table = OutgoingEventRecord
        async with self._write_lock, self._engine.begin() as connection:
            result = await connection.execute(
                update(table)
                .where(table.id == claimed.id, table.lease_token == claimed.lease_token)
                .values(**values)
            )
        return bool(result.rowcount)

    async def counts(self) -> dict[str, int]:
        """How many events are pending, delivered and failed."""
        table = OutgoingEventRecord
        query = select(table.status, func.count()).group_by(table.status)
        async with self._engine.connect() as connection:
            found = {status: int(count) for status, count in await connection.execute(query)}
        return {status: found.get(status, 0) for status in (PENDING, DELIVERED, FAILED)}
