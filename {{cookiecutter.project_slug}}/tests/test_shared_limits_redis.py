"""With a Redis broker, the limits are counted in Redis: shared by every process, never exceeded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from {{ cookiecutter.package_name }}.ratelimit.storage import KEY_PREFIX
from {{ cookiecutter.package_name }}.store import RateLimitHit, StoreSettings, open_engine

from .conftest import auth, migrate, service
from .limit_takers import take_together
from .redis_server import RedisServer, running_redis
from .smtp_server import SmtpServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def rate_limit_keys(server: RedisServer) -> list[bytes]:
    client = redis.Redis.from_url(server.url)
    try:
        return list(client.scan_iter(f"{KEY_PREFIX}*"))
    finally:
        client.close()


def hits_in_store(database_url: str) -> int:
    async def count() -> int:
        engine = open_engine(database_url)
        try:
            async with engine.connect() as connection:
                return int(await connection.scalar(select(func.count()).select_from(RateLimitHit)) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_two_processes_get_the_limit_and_no_more(redis_server: RedisServer, tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"
    migrate(database_url)
    admitted = take_together(
        2, database_url, "200/minute", batch=(1, 1, 1), batches=40, redis_url=redis_server.url
    )
    assert sum(messages for messages, _ in admitted) == 200
    assert rate_limit_keys(redis_server)
    assert hits_in_store(database_url) == 0


def test_two_processes_keep_messages_and_recipients_under_their_limits(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"
    migrate(database_url)
    admitted = take_together(
        2, database_url, "40/minute", "60/hour", batch=(3, 1, 2), batches=10, redis_url=redis_server.url
    )
    assert 0 < sum(messages for messages, _ in admitted) <= 40
    assert 0 < sum(recipients for _, recipients in admitted) <= 60


def test_the_api_limit_is_shared_through_redis(
    redis_server: RedisServer, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two apps, as two uvicorn workers, with Redis as the broker: what one counts, the other sees."""
    env = {"API_RATE_LIMIT": "3/minute", "CELERY_BROKER_URL": redis_server.url}
    with service(monkeypatch, **env) as first, service(monkeypatch, **env) as second:
        answers = [
            client.get("/notifications", headers=auth()).status_code
            for client in (first, second, first, second)
        ]
    assert answers == [200, 200, 200, 429]
    assert rate_limit_keys(redis_server)
    assert hits_in_store(StoreSettings().database_url) == 0
