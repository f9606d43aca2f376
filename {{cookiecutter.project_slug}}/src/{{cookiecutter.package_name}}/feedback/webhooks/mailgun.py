"""Mailgun webhooks: HMAC-SHA256 of timestamp + token with the signing key, each token taken once.

The JSON body holds `signature` (timestamp, token, signature; `parent-signature` too for a
subaccount's domain) and `event-data`, one event: `failed` (severity `permanent` is a hard bounce,
`temporary` a soft one, as Mailgun classifies them), `delivered` and `complained` become
`DeliveryEvent`s. The notification id travels in the X-Mailgun-Variables header, which Mailgun
returns as `user-variables`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from typing import Any

import httpx
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from ..events import BounceKind, DeliveryEvent, EventType
from .base import (
    NOTIFICATION_ID_KEY,
    PayloadError,
    Received,
    SignatureError,
    WebhookRequest,
    check_fresh,
    checked_notification_id,
    enhanced_status,
    malformed,
    message_id,
    one_line,
)
from .settings import WebhookSettings

__all__ = ["NAME", "MailgunReceiver", "SeenTokens", "receiver", "tracking_headers"]

NAME = "mailgun"
TYPES = {"failed": EventType.BOUNCED, "delivered": EventType.DELIVERED, "complained": EventType.COMPLAINED}
"""Mailgun's delivery events; the others (accepted, opened, clicked, unsubscribed...) are skipped."""
MAX_SEEN_TOKENS = 100_000


def tracking_headers(notification_id: str, settings: WebhookSettings) -> dict[str, str]:
    """An X-Mailgun-Variables header, returned in each event as `user-variables`."""
    return {
        "X-Mailgun-Variables": json.dumps({NOTIFICATION_ID_KEY: checked_notification_id(notification_id)})
    }


def receiver(settings: WebhookSettings, client: httpx.AsyncClient) -> MailgunReceiver:
    """A receiver verifying with WEBHOOK_MAILGUN_SIGNING_KEY."""
    return MailgunReceiver(settings)


class SeenTokens:
    """The tokens of verified requests, kept twice the replay window (a signed timestamp may be that far
    from its arrival); a token seen again is a replay. Per process, at most MAX_SEEN_TOKENS."""

    def __init__(self, window: float) -> None:
        self.keep = 2 * window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, token: str) -> bool:
        """Record `token`; False if it was already recorded."""
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - self.keep:
            self._seen.popitem(last=False)
        if token in self._seen:
            return False
        self._seen[token] = now
        if len(self._seen) > MAX_SEEN_TOKENS:
            self._seen.popitem(last=False)
        return True


class DeliveryStatus(BaseModel):
    code: int | str | None = None
    message: str | None = None
    description: str | None = None
    enhanced_code: str | None = Field(default=None, alias="enhanced-code")
    bounce_code: str | None = Field(default=None, alias="bounce-code")


class MessageHeaders(BaseModel):
    message_id: str | None = Field(default=None, alias="message-id")


class Message(BaseModel):
    headers: MessageHeaders = Field(default_factory=MessageHeaders)


class MailgunEvent(BaseModel):
    """`event-data`, with the fields read here."""

    event: str
    id: str = ""
    timestamp: AwareDatetime
    recipient: str
    severity: str | None = None
    reason: str | None = None
    delivery_status: DeliveryStatus = Field(default_factory=DeliveryStatus, alias="delivery-status")
    message: Message = Field(default_factory=Message)
    user_variables: dict[str, Any] = Field(default={}, alias="user-variables")


class MailgunReceiver:
    """Verifies the HMAC signature and that its token is new, then reads the event."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.window = settings.replay_window
        key = settings.mailgun_signing_key
        self._key = key.get_secret_value().encode() if key is not None else None
        self.tokens = SeenTokens(settings.replay_window)

    async def receive(self, request: WebhookRequest) -> Received:
        """The event of a verified request, or none for an event that is not about delivery."""
        try:
            body = json.loads(request.body)
        except ValueError:
            raise PayloadError(f"{NAME}: the body is not JSON") from None
        if not isinstance(body, dict):
            raise PayloadError(f"{NAME}: the body is not a JSON object")
        self._verify(body.get("signature"))
        data = body.get("event-data")
        if not isinstance(data, dict):
            raise PayloadError(f"{NAME}: no event-data object")
        if data.get("event") not in TYPES:
            return Received()
        try:
            event = MailgunEvent.model_validate(data)
        except ValidationError as error:
            raise malformed(NAME, "a Mailgun event", error) from None
        return Received(events=(delivery_event(event),))

    def _verify(self, signature: object) -> None:
        if self._key is None:
            raise SignatureError(
                f"{NAME}: WEBHOOK_MAILGUN_SIGNING_KEY is not set, so no event can be verified"
            )
        if not isinstance(signature, dict):
            raise SignatureError(f"{NAME}: no signature object")
        timestamp, token = signature.get("timestamp"), signature.get("token")
        if not isinstance(token, str) or not token or not isinstance(timestamp, str | int):
            raise SignatureError(f"{NAME}: the signature object lacks its timestamp or token")
        if not str(timestamp).isdigit():
            raise SignatureError(f"{NAME}: the signature timestamp is not Unix seconds")
        expected = hmac.new(self._key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest().encode()
        offered = [signature.get(name) for name in ("signature", "parent-signature")]
        matches = [
            hmac.compare_digest(expected, value.encode())
            for value in offered
            if isinstance(value, str) and value
        ]
        if not any(matches):
            raise SignatureError(f"{NAME}: signature does not verify with WEBHOOK_MAILGUN_SIGNING_KEY")
        check_fresh(NAME, int(timestamp), self.window)
        if not self.tokens.first_time(token):
            raise SignatureError(f"{NAME}: this signature's token was already used: a replay")


def delivery_event(event: MailgunEvent) -> DeliveryEvent:
    """`event` normalized; a failure carries Mailgun's severity as the bounce kind."""
    type_ = TYPES[event.event]
    status = event.delivery_status
    code = "" if status.code is None else str(status.code)
    reply = status.message or status.description or ""
    diagnostic = one_line(reply) if reply.startswith(code) else one_line(code, reply)  # the code once
    bounce = None
    if type_ is EventType.BOUNCED:
        bounce = BounceKind.HARD if event.severity == "permanent" else BounceKind.SOFT
    notification_id = event.user_variables.get(NOTIFICATION_ID_KEY)
    return DeliveryEvent(
        type=type_,
        recipient=event.recipient.strip(),
        source=NAME,
        occurred_at=event.timestamp,
        notification_id=notification_id if isinstance(notification_id, str) and notification_id else None,
        message_id=message_id(event.message.headers.message_id),
        bounce=bounce,
        status=enhanced_status(status.enhanced_code, status.bounce_code, status.message, status.description),
        diagnostic=diagnostic,
        event_id=event.id,
    )
