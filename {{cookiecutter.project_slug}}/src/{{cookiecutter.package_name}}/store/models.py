"""The tables of the notification store (SQLAlchemy 2); `migrations/` creates them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Status(StrEnum):
    """Where a notification is: `queued` -> `sending` -> `sent`, or `retrying` / `failed` on the way;
    `cancelled` by its client before it went."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Priority(StrEnum):
    """Which due notifications are claimed first: every due `high` one before `normal` and `low` ones."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """The stored value, claimed in ascending order (0: high)."""
        return list(Priority).index(self)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The store's declarative base; `Base.metadata` is what the migrations must produce."""

    metadata = MetaData(naming_convention=NAMING)


class NotificationRecord(Base):
    """One accepted notification of one API client, its content until retention removes it, and every
    attempt to send it.

    `pending` lists the recipients still to send to (all of them at first; later only those a
    server refused with a 4xx reply). `attempts` is a list of `{"at", "reply", "outcome"}`: the
    outcome is the status the attempt led to, or `outcome_unknown` (no reply to the message that went out).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "client", "idempotency_key", unique=True),
        Index(None, "client", "id"),
        Index(None, "priority", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client: Mapped[str] = mapped_column(String(64))
    """The API client that created it (the name in API_KEYS); only that client sees it."""
    status: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    pending: Mapped[list[str]] = mapped_column(JSON)
    accepted: Mapped[list[str]] = mapped_column(JSON)
    refused: Mapped[dict[str, str]] = mapped_column(JSON)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    attempt_count: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    """The X-Request-ID of the request that created it, so that every send logs it."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    """`Priority.rank`: due notifications are claimed by it, then by due time."""
    held_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When a sending limit or a throttling reply first held it back since its last attempt (None: not held)."""
