"""Where the limits are counted, so that every process of the service shares them.
{%- if cookiecutter.delivery == "celery" %}

With a Redis broker, in Redis (the `limits` library's moving window, one Lua script per admission);
with another broker (RabbitMQ), in the store's database (`SqlStorage`).
{%- else %}

In the store's database (`SqlStorage`): SQLite for every process on one host, PostgreSQL for several hosts.
{%- endif %}
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
{%- if cookiecutter.delivery == "celery" %}
from typing import TYPE_CHECKING, Any, cast

from limits.aio.storage import RedisStorage, Storage
{%- else %}
from typing import Any

from limits.aio.storage import Storage
{%- endif %}
from sqlalchemy.ext.asyncio import AsyncEngine

from .sql import SqlStorage
{%- if cookiecutter.delivery == "celery" %}

if TYPE_CHECKING:
    import redis.asyncio
    from limits.aio.storage.redis.redispy import RedispyBridge

KEY_PREFIX = "{{ cookiecutter.package_name }}:limits"
"""Prefix of the rate limits' keys in Redis (the broker's queues live beside them)."""
REDIS_TIMEOUT = 2.0
"""Seconds a Redis connection or command may take before the check fails (and sending waits)."""
{%- endif %}

__all__ = ["close_storage", "shared_storage"]


{% if cookiecutter.delivery == "celery" -%}
def shared_storage(
    engine: AsyncEngine, broker_url: str | None = None, lock: AbstractAsyncContextManager[Any] | None = None
) -> Storage:
    """Redis when `broker_url` is a Redis broker's (redis://, rediss://), else the database of `engine` (its
    writes taking `lock`, the store's)."""
    if broker_url is not None and broker_url.startswith(("redis://", "rediss://")):
        return RedisStorage(
            f"async+{broker_url}",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
    return SqlStorage(engine, lock=lock)


async def close_storage(storage: Storage) -> None:
    """Close what `shared_storage` opened: Redis's connections (the engine is the store's to close)."""
    if isinstance(storage, RedisStorage):
        bridge = cast("RedispyBridge", storage.bridge)
        client = cast("redis.asyncio.Redis", bridge.get_connection())
        await client.aclose()
{%- else -%}
def shared_storage(engine: AsyncEngine, lock: AbstractAsyncContextManager[Any] | None = None) -> Storage:
    """The database of `engine` (the store's), its writes taking `lock` (the store's)."""
    return SqlStorage(engine, lock=lock)


async def close_storage(storage: Storage) -> None:
    """Nothing to close: the engine is the store's."""
{%- endif %}
