"""The table of outgoing events: each status change of a notification, kept until the app's webhook took it.

A row is written in the transaction of the change it reports where the store can (see
`feedback.outgoing`), then delivered with a lease and capped backoff like mail; its `id` is the
`webhook-id` of every delivery attempt, so a receiver can drop repeats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime

__all__ = ["OutgoingEventRecord"]


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
