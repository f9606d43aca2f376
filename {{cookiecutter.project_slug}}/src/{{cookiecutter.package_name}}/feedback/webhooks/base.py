"""What a provider's webhook module offers, the errors a request is refused with, and the replay-window check.

Each provider module (`ses`, `sendgrid`, `mailgun`, `postmark`) verifies its own signature and
normalizes its own event format to `DeliveryEvent`s: nothing outside it knows either. It offers
`tracking_headers` (what to add to a message so the provider echoes the notification id back in its
events) and `receiver` (the verifier and parser of its requests). A receiver verifies before it reads
any event, and its errors are one line that never holds a secret or a signature.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from ..events import DeliveryEvent

if TYPE_CHECKING:
    import httpx

    from .settings import WebhookSettings

__all__ = [
    "NOTIFICATION_ID_KEY",
    "PayloadError",
    "Provider",
    "Received",
    "Receiver",
    "SignatureError",
    "VerificationUnavailableError",
    "WebhookError",
    "WebhookRequest",
    "check_fresh",
    "checked_notification_id",
    "enhanced_status",
    "malformed",
    "message_id",
    "one_line",
]

NOTIFICATION_ID_KEY = "notification_id"
"""The name of the notification id in each provider's metadata (tag, custom argument, variable)."""
NOTIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What every provider carries unchanged (SES tag values allow no more)."""
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
MAX_TEXT = 1000


class WebhookError(Exception):
    """A request that is not taken; the message is one line naming what is wrong, never a secret."""


class SignatureError(WebhookError):
    """Not shown to come from the provider (401): a bad or missing signature or credentials, an unknown
    sender (SNS topic), or a timestamp outside the replay window, or a token seen before."""

    def __init__(self, message: str, challenge: str = "") -> None:
        super().__init__(message)
        self.challenge = challenge
        """A `WWW-Authenticate` value for the answer (basic auth), or empty."""


class PayloadError(WebhookError):
    """Not in the provider's format (400)."""


class VerificationUnavailableError(WebhookError):
    """The signature cannot be checked now (the SNS signing certificate did not arrive): the provider
    should send it again later (503)."""


@dataclass(frozen=True)
class WebhookRequest:
    """What a receiver reads of an HTTP request: the exact body and the headers.

    `headers` is looked up by lower-case name: Starlette's `Headers`, or a dict with lower-case keys.
    """

    body: bytes
    headers: Mapping[str, str]

    def header(self, name: str) -> str:
        """The header's value, or empty."""
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Received:
    """What a verified request carried: its events, and for an SNS subscription the URL that confirms it
    (already checked to be an SNS host; the route fetches it with `Webhooks.confirm_subscription`)."""

    events: tuple[DeliveryEvent, ...] = ()
    subscribe_url: str = ""


class Receiver(Protocol):
    """Verifies and parses one provider's requests."""

    async def receive(self, request: WebhookRequest) -> Received:
        """The events of `request`; raises `SignatureError`, `PayloadError` or `VerificationUnavailableError`."""
        ...


class Provider(Protocol):
    """What a provider module offers (the module itself is one)."""

    NAME: str

    def tracking_headers(self, notification_id: str, settings: WebhookSettings) -> dict[str, str]:
        """The headers that make the provider echo `notification_id` back in its events."""
        ...

    def receiver(self, settings: WebhookSettings, client: httpx.AsyncClient) -> Receiver:
        """A receiver for the provider's requests; `client` fetches what it needs (SNS certificates)."""
        ...


def check_fresh(provider: str, timestamp: float, window: float) -> None:
    """Raise `SignatureError` unless `timestamp` (Unix seconds, signed) is within `window` seconds of now."""
    skew = time.time() - timestamp
    if abs(skew) > window:
        side = "old" if skew > 0 else "far in the future"
        raise SignatureError(
            f"{provider}: signed timestamp is {abs(skew):.0f} s {side}, outside the {window:g} s replay window "
            "(WEBHOOK_REPLAY_WINDOW); a replay, or this machine's clock is wrong"
        )


def checked_notification_id(notification_id: str) -> str:
    """`notification_id` if every provider can carry it unchanged, else ValueError."""
    if not NOTIFICATION_ID.fullmatch(notification_id):
        raise ValueError("a notification id for provider metadata has 1 to 128 letters, digits, '-' or '_'")
    return notification_id


def enhanced_status(*texts: str | None) -> str:
    """The first RFC 3463 status code ("5.1.1") in `texts`, or empty."""
    for text in texts:
        found = ENHANCED_STATUS.search(text or "")
        if found:
            return found.group(1)
    return ""


def one_line(*parts: str | None) -> str:
    """The non-empty `parts` joined on one line, whitespace collapsed, at most MAX_TEXT characters."""
    text = " ".join(" ".join((part or "").split()) for part in parts if part and part.strip())
    return text[:MAX_TEXT]


def message_id(value: str | None) -> str | None:
    """A Message-ID as the service writes it (`<local@domain>`), or None when absent."""
    value = (value or "").strip()
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"


def malformed(provider: str, what: str, error: ValidationError) -> PayloadError:
    """`PayloadError` naming `what` the body is not and the first problem of `error` by its location
    (never the input)."""
    detail = error.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in detail["loc"]) or "body"
    return PayloadError(f"{provider}: not {what} ({where}: {detail['msg']})")
