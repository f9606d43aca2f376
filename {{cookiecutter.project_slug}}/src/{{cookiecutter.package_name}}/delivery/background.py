"""In-process delivery: each notification is sent by a task of this process."""

from __future__ import annotations

import asyncio
import contextlib

from ..mail import Mailer, MailError
from ..notifications import Notification
from . import deliver


class BackgroundDelivery:
    """Sends notifications from background tasks that share one pooled `Mailer`."""

    def __init__(self, mailer: Mailer, service_name: str) -> None:
        self._mailer = mailer
        self._service_name = service_name
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, notification: Notification) -> None:
        task = asyncio.create_task(self._send(notification), name=f"notification-{notification.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, notification: Notification) -> None:
        # `deliver` logs failures; a background task has no caller to tell.
        with contextlib.suppress(MailError):
            await deliver(self._mailer, notification, self._service_name)

    async def aclose(self) -> None:
        """Wait for every accepted notification, then close the SMTP sessions."""
        while self._tasks:
            await asyncio.gather(*self._tasks)
        await self._mailer.aclose()
