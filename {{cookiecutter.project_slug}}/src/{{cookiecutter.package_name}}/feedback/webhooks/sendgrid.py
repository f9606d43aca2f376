"""SendGrid's signed Event Webhook: ECDSA (P-256, SHA-256) over the timestamp header and the raw body.

The body is a JSON array of events. `bounce` (its `type`: `bounce` for good, `blocked` for now),
`dropped`, `deferred`, `delivered` and `spamreport` become `DeliveryEvent`s; engagement and account
events are skipped. The notification id travels as a unique argument of the X-SMTPAPI header, which
SendGrid copies into every event as a top-level field.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError

from ..events import BounceKind, DeliveryEvent, EventType
from .base import (
    NOTIFICATION_ID_KEY,
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
from .settings import WebhookSettings, sendgrid_public_key

__all__ = ["NAME", "SendGridReceiver", "receiver", "tracking_headers"]

NAME = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
TYPES = {
    "bounce": EventType.BOUNCED,
    "dropped": EventType.BOUNCED,
    "deferred": EventType.DEFERRED,
    "delivered": EventType.DELIVERED,
    "spamreport": EventType.COMPLAINED,
}
"""SendGrid's delivery events; the others (processed, open, click, unsubscribes, account events) are skipped."""
HARD_DROP_REASONS = frozenset(
    {"Bounced Address", "Invalid", "Spam Reporting Address", "Unsubscribed Address"}
)
"""`dropped` reasons that name the address (SendGrid will drop it again); other drops are about the message."""
EVENTS = TypeAdapter(list[dict[str, Any]])


def tracking_headers(notification_id: str, settings: WebhookSettings) -> dict[str, str]:
    """An X-SMTPAPI header whose unique argument SendGrid copies into each event."""
    arguments = {"unique_args": {NOTIFICATION_ID_KEY: checked_notification_id(notification_id)}}
    return {"X-SMTPAPI": json.dumps(arguments)}


def receiver(settings: WebhookSettings, client: httpx.AsyncClient) -> SendGridReceiver:
    """A receiver verifying with WEBHOOK_SENDGRID_PUBLIC_KEY."""
    return SendGridReceiver(settings)


class SendGridEvent(BaseModel):
    """One event of the batch, with the fields read here."""

    email: str
    timestamp: AwareDatetime
    event: str
    event_id: str = Field(default="", alias="sg_event_id")
    smtp_id: str | None = Field(default=None, alias="smtp-id")
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    response: str | None = None
    notification_id: str | None = Field(default=None, alias=NOTIFICATION_ID_KEY)


class SendGridReceiver:
    """Verifies the ECDSA signature, then reads the batch of events."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.window = settings.replay_window
        key = settings.sendgrid_public_key
        self.key = sendgrid_public_key(key) if key else None

    async def receive(self, request: WebhookRequest) -> Received:
        """The delivery events of a verified batch."""
        self._verify(request)
        try:
            batch = EVENTS.validate_json(request.body)
            events = [SendGridEvent.model_validate(item) for item in batch if item.get("event") in TYPES]
        except ValidationError as error:
            raise malformed(NAME, "a SendGrid event batch", error) from None
        return Received(events=tuple(delivery_event(event) for event in events))

    def _verify(self, request: WebhookRequest) -> None:
        if self.key is None:
            raise SignatureError(
                f"{NAME}: WEBHOOK_SENDGRID_PUBLIC_KEY is not set, so no event can be verified"
            )
        signature, timestamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise SignatureError(f"{NAME}: no {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers")
        if not timestamp.isdigit():
            raise SignatureError(f"{NAME}: {TIMESTAMP_HEADER} is not Unix seconds")
        check_fresh(NAME, int(timestamp), self.window)
        try:
            self.key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode() + request.body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (binascii.Error, InvalidSignature):
            raise SignatureError(
                f"{NAME}: signature does not verify with WEBHOOK_SENDGRID_PUBLIC_KEY"
            ) from None


def delivery_event(event: SendGridEvent) -> DeliveryEvent:
    """`event` normalized: a `bounce` of type `blocked` and a drop for the message's sake are soft."""
    type_ = TYPES[event.event]
    bounce = None
    if event.event == "bounce":
        bounce = BounceKind.SOFT if event.type == "blocked" else BounceKind.HARD
    elif event.event == "dropped":
        bounce = BounceKind.HARD if event.reason in HARD_DROP_REASONS else BounceKind.SOFT
    detail = event.reason if type_ is EventType.BOUNCED else event.response or event.reason
    return DeliveryEvent(
        type=type_,
        recipient=event.email.strip(),
        source=NAME,
        occurred_at=event.timestamp,
        notification_id=event.notification_id or None,
        message_id=message_id(event.smtp_id),
        bounce=bounce,
        status=enhanced_status(event.status, detail),
        diagnostic=one_line(detail),
        event_id=event.event_id,
    )
