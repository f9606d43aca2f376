"""Per-recipient history: what happened to each recipient of each notification, in time order.

The SMTP server's answer at send time (`accepted`, `refused`), a recipient skipped because it is
suppressed (`suppressed`), and what providers and bounce reports tell later (`delivered`,
`bounced`, `complained`, `deferred`) are rows of `recipient_events`. A report seen twice (a
provider retrying) has the same `(source, event_id)` and is kept once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime

__all__ = ["RecipientEventRecord"]


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
