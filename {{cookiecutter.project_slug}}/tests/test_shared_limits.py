"""The sending limits in the store's database: moving windows, shared by processes, never exceeded."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from {{ cookiecutter.package_name }}.ratelimit.sending import WINDOW_MARGIN, SendLimiter, windowed
from {{ cookiecutter.package_name }}.ratelimit.settings import parse_limits
from {{ cookiecutter.package_name }}.ratelimit.sql import SqlStorage
from {{ cookiecutter.package_name }}.store import RateLimitHit, open_engine

from .conftest import migrate
from .limit_takers import take_together
from .postgres import PostgresServer


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_holds_its_amount_wherever_it_starts(database_url: str) -> None:
    migrate(database_url)
    clock = Clock()
    start = clock.now

    async def run() -> list[tuple[float, bool]]:
        engine = open_engine(database_url)
        storage = SqlStorage(engine, clock=clock)
        taken = []
        try:
            for at, amount in [
                (0, 1),
                (1, 1),
                (2, 1),
                (3, 1),
                (9.9, 1),
                (10.5, 1),
                (10.6, 1),
                (12.1, 2),
                (12.2, 1),
            ]:
                clock.now = start + at
                taken.append((at, await storage.acquire_entry("key", 3, 10, amount)))
            clock.now = start + 12.3
            window = await storage.get_moving_window("key", 3, 10)
        finally:
            await engine.dispose()
        assert window == (start + 10.5, 3)
        return taken

    assert asyncio.run(run()) == [
        (0, True),
        (1, True),
        (2, True),
        (3, False),  # three in (-7, 3]
        (9.9, False),
        (10.5, True),  # the hit at 0 left the window (0.5, 10.5]
        (10.6, False),
        (12.1, True),  # 1 and 2 left: 10.5 alone, room for 2
        (12.2, False),
    ]


def test_an_amount_larger_than_the_limit_is_never_taken(database_url: str) -> None:
    migrate(database_url)

    async def run() -> tuple[bool, tuple[float, int]]:
        engine = open_engine(database_url)
        storage = SqlStorage(engine)
        try:
            return await storage.acquire_entry("key", 3, 10, 4), await storage.get_moving_window("key", 3, 10)
        finally:
            await engine.dispose()

    taken, (_, count) = asyncio.run(run())
    assert (taken, count) == (False, 0)


def test_windows_of_a_minute_or_more_are_counted_a_little_longer() -> None:
    assert windowed(parse_limits("14/second")[0]) == parse_limits("14/second")[0]
    minute = windowed(parse_limits("30/minute")[0])
    assert (minute.amount, minute.get_expiry()) == (30, 60 + WINDOW_MARGIN)
    assert windowed(parse_limits("2000/day")[0]).get_expiry() == 86400 + WINDOW_MARGIN


def test_expired_hits_are_deleted_as_new_ones_come(database_url: str) -> None:
    migrate(database_url)
    clock = Clock()

    async def run() -> int:
        engine = open_engine(database_url)
        storage = SqlStorage(engine, clock=clock)
        try:
            for _ in range(5):
                await storage.acquire_entry("key", 100, 10)
                clock.now += 61  # past the window, and past the pruning interval
            async with engine.connect() as connection:
                return int(await connection.scalar(select(func.count()).select_from(RateLimitHit)) or 0)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == 1


def test_a_take_is_all_or_none_in_the_store(database_url: str) -> None:
    """A full window leaves the others as they were: one transaction for every window."""
    migrate(database_url)

    async def run() -> tuple[str | None, str | None, list[int]]:
        engine = open_engine(database_url)
        limiter = SendLimiter(
            SqlStorage(engine), parse_limits("5/hour, 3/second"), parse_limits("4/day"), "acct"
        )
        try:
            assert [limit.item.get_expiry() for limit in limiter.limits] == [1, 3601, 86401]
            first = await limiter.take(2, 4)
            second = await limiter.take(1, 1)
            windows = await limiter.windows()
        finally:
            await engine.dispose()
        return (
            None if first is None else first.counts,
            None if second is None else second.counts,
            [window.remaining for window in windows],
        )

    assert asyncio.run(run()) == (None, "recipients", [1, 3, 0])


def shared_database(dialect: str, request: pytest.FixtureRequest) -> str:
    """A fresh, migrated store that processes share: one SQLite file, or a PostgreSQL database."""
    if dialect == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.database()
    else:
        url = f"sqlite+aiosqlite:///{request.getfixturevalue('tmp_path') / 'shared.db'}"
    migrate(url)
    return url


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_two_processes_get_the_limit_and_no_more(dialect: str, request: pytest.FixtureRequest) -> None:
    """Two processes of four concurrent takers each (every taker has its own connection), 960 messages offered."""
    admitted = take_together(2, shared_database(dialect, request), "200/minute", batch=(1, 1, 1), batches=40)
    assert sum(messages for messages, _ in admitted) == 200


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_two_processes_keep_messages_and_recipients_under_their_limits(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    database_url = shared_database(dialect, request)
    admitted = take_together(2, database_url, "40/minute", "60/hour", batch=(3, 1, 2), batches=10)
    messages = sum(count for count, _ in admitted)
    recipients = sum(count for _, count in admitted)
    assert 0 < messages <= 40
    assert 0 < recipients <= 60

    async def taken() -> dict[str, int]:
        engine = open_engine(database_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    select(RateLimitHit.key, func.sum(RateLimitHit.amount)).group_by(RateLimitHit.key)
                )
                return {key.split("/")[1]: int(total) for key, total in rows}
        finally:
            await engine.dispose()

    # What the processes were admitted is what the store holds: a take is all or none.
    assert asyncio.run(taken()) == {"messages": messages, "recipients": recipients}
