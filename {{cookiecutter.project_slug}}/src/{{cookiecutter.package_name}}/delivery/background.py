"""In-process delivery: a `Dispatcher` in the service process sends what the store holds."""

from __future__ import annotations

import asyncio

from limits.aio.storage import Storage

from .. import SERVICE_NAME
from ..mail import Mailer
from ..notifications import Composer
from ..ratelimit.storage import shared_storage
from ..store import NotificationStore, Priority
from . import DeliveryContext
from .dispatcher import Dispatcher
from .holding import sending_gate
from .metrics import delivery_metrics


class BackgroundDelivery:
    """Runs the dispatcher as a task of this process; notifications wait in the store, not in memory."""

    def __init__(self, dispatcher: Dispatcher, mailer: Mailer) -> None:
        self._dispatcher = dispatcher
        self._mailer = mailer
        self._runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sending (including what an earlier process left queued)."""
        self._runner = asyncio.create_task(self._dispatcher.run(), name="dispatcher")

    async def submit(self, notification_id: str, priority: Priority = Priority.NORMAL) -> None:
        """`notification_id` was committed: send it soon (the dispatcher claims by priority)."""
        self._dispatcher.wake()

    async def aclose(self) -> None:
        """Stop claiming, finish the sends in flight (bounded), close the SMTP sessions."""
        await self._dispatcher.stop()
        if self._runner is not None:
            await self._runner
        await self._mailer.aclose()


def create_delivery(
    settings: DeliveryContext, store: NotificationStore, composer: Composer | None = None
) -> BackgroundDelivery:
    """The delivery of this project: a dispatcher in the service process, composing with `composer` (the app's)."""
    metrics = delivery_metrics(settings.metrics)
    mailer = Mailer(settings.mail, metrics)
    gate = sending_gate(limits_storage(store), settings.mail, settings.limits_in_force, settings.metrics)
    dispatcher = Dispatcher(
        store,
        mailer,
        settings.delivery,
        settings.store,
        service_name=SERVICE_NAME,
        sender=str(settings.mail.from_address),
        events=metrics,
        gate=gate,
        composer=composer,
    )
    return BackgroundDelivery(dispatcher, mailer)


def limits_storage(store: NotificationStore) -> Storage:
    """Where this project counts its rate limits: the store's database."""
    return shared_storage(store.engine, store.write_lock)
