"""Queued delivery: each notification becomes a Celery message; the workers (`worker.py`) send it."""

from __future__ import annotations

import asyncio

from celery import Celery

from ..mail import load_settings
from ..notifications import Notification
from ..worker import TASK_NAME, CelerySettings, create_celery_app


class CeleryDelivery:
    """Publishes notifications to the broker; `submit` returns once the broker holds the message."""

    def __init__(self, app: Celery | None = None) -> None:
        self._app = app or create_celery_app(load_settings(CelerySettings))

    async def submit(self, notification: Notification) -> None:
        """Queue `notification` as JSON (task id = notification id); raises if the broker is unreachable."""
        await asyncio.to_thread(
            self._app.send_task,
            TASK_NAME,
            args=(notification.model_dump(mode="json"),),
            task_id=notification.id,
        )

    async def aclose(self) -> None:
        """Close the broker connections; what was queued stays with the broker."""
        await asyncio.to_thread(self._app.close)
