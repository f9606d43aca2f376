"""The table of the rate limits kept in the store's database (when the service has no Redis broker)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base


class RateLimitHit(Base):
    """What one admission took from one limit: `amount` (messages, recipients or requests) at `at`.

    A limit's window holds the hits of its `key` younger than the window's length; older ones are
    deleted as hits come in. `at` is seconds since the epoch.
    """

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index(None, "key", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[float] = mapped_column(Float)
    amount: Mapped[int] = mapped_column(Integer)
