"""Queued delivery: each notification becomes a Celery message; the workers (`worker.py`) send it."""

from __future__ import annotations

import asyncio

from kombu.exceptions import OperationalError

from ..mail import load_settings
from ..notifications import Notification
from ..worker import TASK_NAME, CelerySettings, create_celery_app
from . import DeliveryUnavailableError


class CeleryDelivery:
    """Publishes notifications to the broker (CELERY_* settings); `submit` returns once the broker holds one."""

    def __init__(self) -> None:
        self._app = create_celery_app(load_settings(CelerySettings))

    async def submit(self, notification: Notification) -> None:
        """Queue `notification` as JSON (task id = notification id).

        Raises `DeliveryUnavailableError` (the API answers 503) when the broker cannot take it.
        """
        try:
            await asyncio.to_thread(
                self._app.send_task,
                TASK_NAME,
                args=(notification.model_dump(mode="json"),),
                task_id=notification.id,
            )
        except OperationalError as error:
            raise DeliveryUnavailableError(
                f"the broker did not accept notification {notification.id}: {error}"
            ) from error

    async def aclose(self) -> None:
        """Close the broker connections; what was queued stays with the broker."""
        await asyncio.to_thread(self._app.close)
