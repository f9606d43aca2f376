"""Inbound provider webhooks, django-anymail style: one module per provider, each verifying its own
signature and normalizing its own events to `DeliveryEvent`s.

At send time, `tracking_headers(provider, notification_id, settings)` gives the headers that make
the provider echo the notification id back. On a request, `Webhooks.receive(provider, request)`
verifies and parses it. The provider names are those of `mail.providers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import httpx

from . import mailgun, postmark, sendgrid, ses
from .base import (
    PayloadError,
    Provider,
    Received,
    Receiver,
    SignatureError,
    VerificationUnavailableError,
    WebhookError,
    WebhookRequest,
)
from .settings import WebhookSettings

__all__ = [
    "PROVIDERS",
    "PayloadError",
    "Received",
    "SignatureError",
    "UnknownProviderError",
    "VerificationUnavailableError",
    "WebhookError",
    "WebhookRequest",
    "WebhookSettings",
    "Webhooks",
    "tracking_headers",
]

PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {module.NAME: module for module in (ses, sendgrid, mailgun, postmark)}
)
"""Each provider's module, by the name `mail.providers` gives it."""


class UnknownProviderError(WebhookError):
    """No webhook for that provider (404)."""


def tracking_headers(provider: str | None, notification_id: str, settings: WebhookSettings) -> dict[str, str]:
    """The headers that make `provider` return `notification_id` in its events; none for other servers.

    `notification_id` must be 1 to 128 letters, digits, '-' or '_' (ValueError otherwise).
    """
    module = PROVIDERS.get(provider or "")
    return {} if module is None else module.tracking_headers(notification_id, settings)


class Webhooks:
    """Every provider's receiver, sharing one HTTP client (SNS certificates, subscription confirmations).

    Open one for the app's lifetime and `await aclose()` it. `client` is for tests (its own TLS trust
    and network); by default one is made with WEBHOOK_FETCH_TIMEOUT.
    """

    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=settings.fetch_timeout)
        self._receivers: dict[str, Receiver] = {
            name: module.receiver(settings, self._client) for name, module in PROVIDERS.items()
        }

    async def receive(self, provider: str, request: WebhookRequest) -> Received:
        """Verify `request` as `provider`'s, then its events; raises a `WebhookError` (`UnknownProviderError`,
        `SignatureError`, `PayloadError`, `VerificationUnavailableError`)."""
        receiver = self._receivers.get(provider)
        if receiver is None:
            raise UnknownProviderError(f"no webhook for that provider; use {', '.join(PROVIDERS)}")
        return await receiver.receive(request)

    async def confirm_subscription(self, url: str) -> None:
        """Confirm an SNS subscription (`Received.subscribe_url`); `VerificationUnavailableError` if SNS did not take it."""
        await ses.confirm_subscription(self._client, url)

    async def aclose(self) -> None:
        """Close the HTTP client, if it was made here."""
        if self._owns_client:
            await self._client.aclose()
