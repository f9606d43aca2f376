"""A `limits` storage in the store's database, for the moving window: what every process using it shares.

Each admission is a row (`store.RateLimitHit`: key, time, amount); a window holds the rows of its key
younger than its length. Taking from a window is one statement that inserts only if the window has
room, and concurrent takers are serialized, so no window ever holds more than its limit:

- SQLite: the first statement of the transaction writes, and SQLite gives a writing statement the
  database's one write lock before it reads (waiting up to the store's busy timeout); every process
  on the host shares the file and its lock, held until the commit.
- PostgreSQL: the transaction first takes an advisory lock on each key (`pg_advisory_xact_lock`, in
  key order), so each statement after it reads every admission committed before.

`acquire_entries` takes from several windows in one transaction, all or none: one commit per
admission, and a full window leaves the others as they were.

Rows older than their window are deleted as hits come in (at most once a minute per key and process).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any

from limits.aio.storage import MovingWindowSupport, Storage
from sqlalchemy import (
    ColumnElement,
    Float,
    Insert,
    Integer,
    Select,
    String,
    Subquery,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store import RateLimitHit

__all__ = ["Entry", "SqlStorage"]

PRUNE_INTERVAL = 60.0
"""Seconds between two deletions of a key's expired rows by one process."""


@dataclass(frozen=True)
class Entry:
    """`amount` to take from the window of `key`: at most `limit` per `expiry` seconds."""

    key: str
    limit: int
    expiry: int
    amount: int


class SqlStorage(Storage, MovingWindowSupport):
    """Moving windows in the `rate_limit_hits` table of `engine`'s database (SQLite or PostgreSQL).

    Only the moving window is kept (it is what keeps every window of a period under its limit); the
    fixed-window methods of `limits.aio.storage.Storage` raise NotImplementedError. `clock` gives
    seconds since the epoch (processes on several hosts need synchronised clocks, as for leases).
    """

    STORAGE_SCHEME = None

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
        lock: AbstractAsyncContextManager[Any] | None = None,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._lock = lock or contextlib.nullcontext()
        """Taken around each write: the store's own writes take turns on it (SQLite has one writer)."""
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._pruned: dict[str, float] = {}

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Take `amount` from the window of `key` (`limit` per `expiry` seconds) if it has room; whether it did."""
        return await self.acquire_entries([Entry(key, limit, expiry, amount)]) is None

    async def acquire_entries(self, entries: Sequence[Entry]) -> int | None:
        """Take every entry, or none: None when each window had room, else the index of the first that had not.

        One statement inserts every row if every window has room (one round trip, one commit).
        """
        if not entries:
            return None
        now = self._clock()
        async with self._lock, self._engine.connect() as connection, connection.begin() as transaction:
            if self._postgres:
                locks = [
                    func.pg_advisory_xact_lock(lock_id(key))
                    for key in sorted({entry.key for entry in entries})
                ]
                await connection.execute(select(*locks))  # taken left to right: in key order
            parameters = _parameters(entries, now)
            if (await connection.execute(_take_all(len(entries)), parameters)).rowcount == len(entries):
                full = None
            else:
                windows = await connection.execute(_windows(len(entries)), parameters)
                taken = {key: int(amount) for key, _, amount in windows}
                full = next(
                    (
                        index
                        for index, entry in enumerate(entries)
                        if taken.get(entry.key, 0) + entry.amount > entry.limit
                    ),
                    0,
                )
                await transaction.rollback()
        if full is None:
            await self._prune(entries, now)
        return full

    async def get_moving_windows(self, entries: Sequence[Entry]) -> list[tuple[float, int]]:
        """`get_moving_window` of every entry's key (its amount unused), in one query."""
        now = self._clock()
        async with self._engine.connect() as connection:
            found = {
                key: (float(oldest), int(taken))
                for key, oldest, taken in await connection.execute(
                    _windows(len(entries)), _parameters(entries, now)
                )
            }
        return [found.get(entry.key, (now, 0)) for entry in entries]

    async def _prune(self, entries: Sequence[Entry], now: float) -> None:
        """Delete the expired rows of the entries' keys not pruned by this process for PRUNE_INTERVAL."""
        due = [entry for entry in entries if now - self._pruned.get(entry.key, 0.0) >= PRUNE_INTERVAL]
        if not due:
            return
        self._pruned.update(dict.fromkeys((entry.key for entry in due), now))
        expired = or_(
            *(and_(RateLimitHit.key == entry.key, RateLimitHit.at <= now - entry.expiry) for entry in due)
        )
        async with self._lock, self._engine.begin() as connection:
            await connection.execute(delete(RateLimitHit).where(expired))

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest admission in the window, amount taken in it); (now, 0) for an empty window."""
        [window] = await self.get_moving_windows([Entry(key, limit, expiry, 0)])
        return window

    async def clear(self, key: str) -> None:
        """Forget every admission of `key`."""
        async with self._engine.begin() as connection:
            await connection.execute(delete(RateLimitHit).where(RateLimitHit.key == key))

    async def reset(self) -> int | None:
        """Forget every admission of every key; returns how many rows went."""
        async with self._engine.begin() as connection:
            return int((await connection.execute(delete(RateLimitHit))).rowcount)

    async def check(self) -> bool:
        """Whether the table answers."""
        try:
            async with self._engine.connect() as connection:
                await connection.execute(select(RateLimitHit.id).limit(1))
        except SQLAlchemyError:
            return False
        return True

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError(FIXED_WINDOW_UNSUPPORTED)

    async def get(self, key: str) -> int:
        raise NotImplementedError(FIXED_WINDOW_UNSUPPORTED)

    async def get_expiry(self, key: str) -> float:
        raise NotImplementedError(FIXED_WINDOW_UNSUPPORTED)


FIXED_WINDOW_UNSUPPORTED = (
    "SqlStorage keeps moving windows only: use limits.aio.strategies.MovingWindowRateLimiter"
)


def lock_id(key: str) -> int:
    """A PostgreSQL advisory lock number for `key` (64 bits of its SHA-256: another key's rarely, harmlessly)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _parameters(entries: Sequence[Entry], now: float) -> dict[str, Any]:
    """The values of the statements below for `entries` at `now`."""
    values: dict[str, Any] = {"now": now}
    for index, entry in enumerate(entries):
        values |= {f"key_{index}": entry.key, f"cap_{index}": entry.limit, f"seconds_{index}": entry.expiry}
        values[f"cost_{index}"] = entry.amount
    return values


@cache
def _windows(count: int) -> Select[str, float, int]:
    """(key, oldest admission, amount taken) of the windows of `count` entries, those that hold anything.

    Statements are made once for each number of entries (their values are parameters), so SQLAlchemy
    compiles each once too.
    """
    in_window = or_(
        *(
            and_(RateLimitHit.key == bindparam(f"key_{index}", type_=String), RateLimitHit.at > _since(index))
            for index in range(count)
        )
    )
    return (
        select(RateLimitHit.key, func.min(RateLimitHit.at), func.sum(RateLimitHit.amount))
        .where(in_window)
        .group_by(RateLimitHit.key)
    )


@cache
def _take_all(count: int) -> Insert:
    """INSERT a row for each of `count` entries at `now` if every entry's window has room for it, else nothing."""

    def wanted(name: str) -> Subquery:
        rows = [
            select(
                bindparam(f"key_{index}", type_=String).label("window_key"),
                bindparam(f"cap_{index}", type_=Integer).label("cap"),
                _since(index).label("since"),
                bindparam(f"cost_{index}", type_=Integer).label("cost"),
            )
            for index in range(count)
        ]
        return (union_all(*rows) if count > 1 else rows[0]).subquery(name)

    rows, checked = wanted("wanted"), wanted("checked")
    taken = (
        select(func.coalesce(func.sum(RateLimitHit.amount), 0))
        .where(RateLimitHit.key == checked.c.window_key, RateLimitHit.at > checked.c.since)
        .scalar_subquery()
    )
    full = select(checked.c.window_key).where(taken + checked.c.cost > checked.c.cap)
    chosen = select(rows.c.window_key, bindparam("now", type_=Float), rows.c.cost).where(~exists(full))
    return insert(RateLimitHit).from_select(["key", "at", "amount"], chosen)


def _since(index: int) -> ColumnElement[float]:
    """Where the window of entry `index` starts: `now` less its length."""
    return bindparam("now", type_=Float) - bindparam(f"seconds_{index}", type_=Integer)
