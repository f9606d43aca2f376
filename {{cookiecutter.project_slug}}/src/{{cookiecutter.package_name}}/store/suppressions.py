"""The suppression list: addresses the service no longer sends to, each with why and since when.

An address is kept normalized (`normalize`: trimmed, lowercase), so `Bob@Example.COM` and
`bob@example.com` are one entry. Hard bounces and complaints add an address at once, soft bounces
after SUPPRESSION_SOFT_BOUNCES within a window, an unsubscribe link or an operator (`manual`) too.
Use it through `NotificationStore.suppressions` (a `SuppressionList`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, RowMapping, String, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime

__all__ = ["Reason", "Suppression", "SuppressionList", "SuppressionRecord", "normalize"]

MAX_ADDRESS = 320
LOOKUP_CHUNK = 500
"""Addresses looked up in one query (stays under every database's bound on parameters)."""


class Reason(StrEnum):
    """Why an address is on the list."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


def normalize(address: str) -> str:
    """`address` as the list keeps it: surrounding space and `<>` removed, lowercase."""
    return address.strip().strip("<>").strip().lower()


class SuppressionRecord(Base):
    """One suppressed address; `event` describes what put it there (a bounce, a complaint, a request)."""

    __tablename__ = "suppressions"
    __table_args__ = (Index(None, "reason", "address"),)

    address: Mapped[str] = mapped_column(String(MAX_ADDRESS), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    event: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class Suppression:
    """An entry of the list: the normalized address, why, the event that put it there, since when."""

    address: str
    reason: Reason
    event: dict[str, Any] | None
    since: datetime


def entry(row: RowMapping) -> Suppression:
    """The `Suppression` of a row of the table."""
    return Suppression(row["address"], Reason(row["reason"]), row["event"], row["created_at"])


class SuppressionList:
    """Add, look up, list and remove suppressed addresses (shared by every API client: a dead address
    or a complaint hurts the sending domain whoever sends).

    `write_lock` is the store's (SQLite has one writer at a time).
    """

    def __init__(self, engine: AsyncEngine, write_lock: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self._engine = engine
        self._write_lock = write_lock

    async def add_suppression(
        self,
        address: str,
        reason: Reason | str,
        event: dict[str, Any] | None = None,
        *,
        since: datetime | None = None,
    ) -> bool:
        """Put `address` on the list for `reason` (`event`: what put it there, JSON-able); False when it was on
        the list already (its first reason and date are kept)."""
        row = {
            "address": normalize(address),
            "reason": str(Reason(reason)),
            "event": event,
            "created_at": since or datetime.now(UTC),
        }
        try:
            async with self._write_lock, self._engine.begin() as connection:
                await connection.execute(insert(SuppressionRecord), [row])
        except IntegrityError:
            return False
        return True

    async def is_suppressed(self, address: str) -> bool:
        """Whether `address` is on the list."""
        return bool(await self.suppressed_among([address]))

    async def suppressed_among(self, addresses: Iterable[str]) -> dict[str, Suppression]:
        """The entries of those of `addresses` on the list, by normalized address (one query per 500)."""
        wanted = sorted({normalize(address) for address in addresses})
        found: dict[str, Suppression] = {}
        async with self._engine.connect() as connection:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                query = select(SuppressionRecord).where(SuppressionRecord.address.in_(chunk))
                for row in (await connection.execute(query)).mappings():
                    found[row["address"]] = entry(row)
        return found

    async def get(self, address: str) -> Suppression | None:
        """The entry of `address`, or None."""
        return (await self.suppressed_among([address])).get(normalize(address))

    async def page(
        self, reason: Reason | None = None, *, after: str | None = None, limit: int = 50
    ) -> Sequence[Suppression]:
        """Up to `limit` entries (of one `reason`, if given) ordered by address, after address `after`."""
        query = select(SuppressionRecord).order_by(SuppressionRecord.address).limit(limit)
        if reason is not None:
            query = query.where(SuppressionRecord.reason == str(reason))
        if after is not None:
            query = query.where(SuppressionRecord.address > normalize(after))
        async with self._engine.connect() as connection:
            return [entry(row) for row in (await connection.execute(query)).mappings()]

    async def count(self) -> int:
        """How many addresses are on the list."""
        async with self._engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(SuppressionRecord)) or 0)

    async def delete(self, address: str) -> bool:
        """Take `address` off the list; False when it was not on it."""
        async with self._write_lock, self._engine.begin() as connection:
            result = await connection.execute(
                delete(SuppressionRecord).where(SuppressionRecord.address == normalize(address))
            )
        return bool(result.rowcount)
