"""The provider's limits on one account, shared by every process: messages and recipients per window.

Each limit is a moving window (`limits`' MovingWindowRateLimiter): no window of its length, wherever
it starts, holds more than its amount, which is how providers count ("10,000 recipients per rolling
24 hours"). A fixed window would let twice the amount through across its boundary. Windows of a
minute or more are counted one second longer than their period (`WINDOW_MARGIN`), so that a message
admitted at the end of one window cannot reach the server inside the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from .sql import Entry, SqlStorage

__all__ = ["WINDOW_MARGIN", "Limit", "SendLimiter", "Window", "windowed"]

WINDOW_MARGIN = 1
"""Seconds added to windows of a minute or more: the time a message admitted may take to reach the server."""


def windowed(item: RateLimitItem) -> RateLimitItem:
    """`item` as counted: its period plus WINDOW_MARGIN from a minute up."""
    expiry = item.get_expiry()
    if expiry < 60:
        return item
    return RateLimitItemPerSecond(item.amount, expiry + WINDOW_MARGIN)


@dataclass(frozen=True)
class Limit:
    """One window of a sending limit: `counts` "messages" or "recipients", `item` its amount per window."""

    counts: str
    item: RateLimitItem


@dataclass(frozen=True)
class Window:
    """A limit's window as read: what is left in it and when its oldest admission leaves it (epoch seconds)."""

    limit: Limit
    remaining: int
    frees_at: float


class SendLimiter:
    """MAIL_RATE_LIMIT (`messages`) and MAIL_RECIPIENT_RATE_LIMIT (`recipients`) for `account`, in `storage`.

    `windows()` reads what is left; `take()` admits messages in every window or none. In the store's
    database (`SqlStorage`) that is one transaction; in Redis, one script per window (the `limits`
    library's), shortest window first: when a longer one turns out full (another process was quicker),
    what was taken from the shorter ones stays taken until they pass (a little capacity is lost, none is
    exceeded).
    """

    def __init__(
        self,
        storage: Storage,
        messages: Sequence[RateLimitItem],
        recipients: Sequence[RateLimitItem],
        account: str,
    ) -> None:
        self._strategy = MovingWindowRateLimiter(storage)
        self._storage = storage
        self._account = account
        limits = [Limit("messages", windowed(item)) for item in messages]
        limits += [Limit("recipients", windowed(item)) for item in recipients]
        self.limits = tuple(sorted(limits, key=lambda limit: limit.item.get_expiry()))

    async def windows(self) -> list[Window]:
        """Each limit's window as it is now."""
        if isinstance(self._storage, SqlStorage):  # one query for every window
            read = await self._storage.get_moving_windows([self._entry(limit, 0) for limit in self.limits])
            return [
                Window(limit, max(limit.item.amount - taken, 0), oldest + limit.item.get_expiry())
                for limit, (oldest, taken) in zip(self.limits, read, strict=True)
            ]
        found = []
        for limit in self.limits:
            stats = await self._strategy.get_window_stats(limit.item, limit.counts, self._account)
            found.append(Window(limit, max(stats.remaining, 0), stats.reset_time))
        return found

    async def take(self, messages: int, recipients: int) -> Limit | None:
        """Admit `messages` messages to `recipients` recipients in all; None when every window had room, else
        the first limit that had not (see the class for what stays taken then)."""
        costs = [(limit, messages if limit.counts == "messages" else recipients) for limit in self.limits]
        costs = [(limit, cost) for limit, cost in costs if cost]
        if isinstance(self._storage, SqlStorage):  # one statement for every window
            full = await self._storage.acquire_entries([self._entry(limit, cost) for limit, cost in costs])
            return None if full is None else costs[full][0]
        for limit, cost in costs:
            if not await self._strategy.hit(limit.item, limit.counts, self._account, cost=cost):
                return limit
        return None

    def _entry(self, limit: Limit, cost: int) -> Entry:
        """`cost` to take from the window of `limit`, under the key `limits` gives it."""
        return Entry(
            limit.item.key_for(limit.counts, self._account), limit.item.amount, limit.item.get_expiry(), cost
        )
