"""Queued delivery: the service commits each notification, then publishes its id; Celery workers send it.

A sweeper in the service publishes again what is due and not taken: notifications published while
the broker was down, retries whose time has come, and those of a worker that died (lease expired).
A worker claims the notification in the store before sending, so a repeated message sends nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

import redis
from celery import Celery
from limits.aio.storage import Storage
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..mail import load_settings
from ..notifications import Composer
from ..ratelimit.storage import shared_storage
from ..store import NotificationStore, Priority, StoreSettings, utcnow
from . import DeliveryContext
from .celery_app import TASK_NAME, CelerySettings, create_celery_app
from .dispatcher import PURGE_INTERVAL, apply_retention
from .settings import DeliverySettings

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
"""Most ids published in one go."""
PUBLISH_BACKLOG = 10_000
"""Most ids waiting to be published; beyond, the sweeper publishes them from the store."""
PING_TIMEOUT = 2
"""Seconds a readiness check waits for the broker."""
BROKER_PRIORITIES = (0, 3, 6)
"""The message priority of each `Priority.rank` on a Redis broker, which hands out 0 first (its steps: 0, 3, 6, 9)."""


class CeleryDelivery:
    """Publishes notification ids to the broker and sweeps the store for what needs publishing again."""

    def __init__(
        self, app: Celery, store: NotificationStore, delivery: DeliverySettings, retention: StoreSettings
    ) -> None:
        self._app = app
        self._store = store
        self._delivery = delivery
        self._retention = retention
        self._published: dict[str, datetime] = {}
        """When this process last published each id (for DELIVERY_LEASE at most)."""
        self._to_publish: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=PUBLISH_BACKLOG)
        self._tasks: list[asyncio.Task[None]] = []
        self._redis = redis_pinger(str(app.conf.broker_url))

    async def start(self) -> None:
        """Start the publisher and the sweeper (which also publishes what an earlier process left queued)."""
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="publisher"),
            asyncio.create_task(self._sweep_forever(), name="sweeper"),
        ]

    async def submit(self, notification_id: str, priority: Priority = Priority.NORMAL) -> None:
        """Have `notification_id` published soon, without waiting for the broker; on Redis, workers take `high`
        ones before those published earlier.

        Should the broker be down (or the backlog full), the notification waits in the store and
        the sweeper publishes it.
        """
        with contextlib.suppress(asyncio.QueueFull):
            self._to_publish.put_nowait((notification_id, priority.rank))

    async def _publish_forever(self) -> None:
        while True:
            ids = [await self._to_publish.get()]
            while not self._to_publish.empty() and len(ids) < SWEEP_BATCH:
                ids.append(self._to_publish.get_nowait())
            await self._publish(ids)

    async def _publish(self, ids: list[tuple[str, int]]) -> bool:
        """Publish (id, priority rank) pairs; whether the broker took them."""
        now = utcnow()
        try:
            await asyncio.to_thread(self._send, ids)
        except Exception as error:
            logger.warning(
                "broker unavailable (%s); %d notification(s) stay queued in the store and are published "
                "when it is back",
                type(error).__name__,
                len(ids),
            )
            return False
        self._published.update(dict.fromkeys((notification_id for notification_id, _ in ids), now))
        return True

    def _send(self, ids: list[tuple[str, int]]) -> None:
        with self._app.producer_or_acquire() as producer:
            for notification_id, rank in ids:
                self._app.send_task(
                    TASK_NAME,
                    args=(notification_id,),
                    task_id=notification_id,
                    producer=producer,
                    priority=BROKER_PRIORITIES[rank],
                )

    async def ping(self) -> None:
        """Raise unless the broker answers (within a few seconds).

        A Redis broker answers PING on the one connection this process keeps for it (readiness probes
        must not open a connection each); another broker (RabbitMQ) is connected to for each check.
        """
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        if self._redis is not None:
            self._redis.ping()
            return
        with self._app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=PING_TIMEOUT)

    async def sweep(self) -> int:
        """Publish the due notifications not published since they became due (or for DELIVERY_LEASE);
        returns how many."""
        now = utcnow()
        lease = timedelta(seconds=self._delivery.lease)
        self._published = {key: at for key, at in self._published.items() if now - at < lease}
        due = [
            (notification_id, rank)
            for notification_id, since, rank in await self._store.due(SWEEP_BATCH)
            if self._published.get(notification_id, since) <= since
        ]
        if due and await self._publish(due):
            logger.info("sweeper: published %d due notification(s)", len(due))
        return len(due)

    async def _sweep_forever(self) -> None:
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.sweep()
                if loop.time() - last_purge >= PURGE_INTERVAL:
                    await apply_retention(self._store, self._retention)
                    last_purge = loop.time()
            except Exception:
                logger.exception("sweeper: could not read the store; trying again")
            await asyncio.sleep(self._delivery.poll_interval)

    async def aclose(self) -> None:
        """Stop sweeping, publish the ids still waiting, close the broker connections.

        What could not be published stays in the store for the next sweeper.
        """
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        waiting = [self._to_publish.get_nowait() for _ in range(self._to_publish.qsize())]
        if waiting:
            await self._publish(waiting)
        await asyncio.to_thread(self._app.close)
        if self._redis is not None:
            self._redis.close()


def redis_pinger(broker_url: str) -> redis.Redis | None:
    """A client that PINGs a Redis broker over one kept connection (redis-py reconnects once the broker is
    back); None for another broker."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    return redis.Redis.from_url(
        broker_url,
        socket_connect_timeout=PING_TIMEOUT,
        socket_timeout=PING_TIMEOUT,
        retry=Retry(NoBackoff(), 1),  # one retry: a connection the broker dropped is replaced at once
    )


def create_delivery(
    settings: DeliveryContext, store: NotificationStore, composer: Composer | None = None
) -> CeleryDelivery:
    """The delivery of this project: Celery workers, fed with ids by this service (`composer`: unused here,
    each worker loads the templates itself)."""
    app = create_celery_app(load_settings(CelerySettings))
    return CeleryDelivery(app, store, settings.delivery, settings.store)


def limits_storage(store: NotificationStore) -> Storage:
    """Where this project counts its rate limits: Redis when it is the broker, else the store's database."""
    broker = load_settings(CelerySettings).broker_url.get_secret_value()
    return shared_storage(store.engine, broker, store.write_lock)
