"""How accepted notifications reach the mail server{% if cookiecutter.delivery == "celery" %}: queued to Celery workers{% else %}: background tasks of this process{% endif %}."""

from __future__ import annotations

import logging
from typing import Protocol

from ..mail import DeliveryResult, Mailer, MailError
from ..notifications import Notification, to_message

logger = logging.getLogger(__name__)


class DeliveryUnavailableError(RuntimeError):
    """The notification could not be accepted for sending now (e.g. the broker is down); retry later."""


class Delivery(Protocol):
    """Takes a notification and sends it after the HTTP response."""

    async def submit(self, notification: Notification) -> None:
        """Accept `notification` for sending; returns before the email goes out.

        Raises `DeliveryUnavailableError` when it cannot take the notification now.
        """

    async def aclose(self) -> None:
        """Finish what was accepted, then release connections."""


async def deliver(mailer: Mailer, notification: Notification, service_name: str) -> DeliveryResult:
    """Send one notification and log its outcome with its id (never a secret)."""
    try:
        result = await mailer.send(to_message(notification, service_name))
    except MailError as error:
        kind = "transient" if error.transient else "permanent"
        logger.error("notification %s not delivered (%s failure): %s", notification.id, kind, error)
        raise
    for recipient, reply in result.refused.items():
        logger.warning("notification %s refused for %s: %s", notification.id, recipient, reply)
    logger.info(
        "notification %s delivered to %d recipient(s) after %d attempt(s)",
        notification.id,
        len(result.accepted),
        result.attempts,
    )
    return result
