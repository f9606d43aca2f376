"""Postmark webhooks: basic auth from the webhook URL, compared in constant time.

One JSON record per request: `Bounce` (its `Type` says hard, soft, delayed, or not a bounce at
all), `SpamComplaint` and `Delivery` become `DeliveryEvent`s. The notification id travels in an
`X-PM-Metadata-notification_id` header, which Postmark returns in the record's `Metadata`. Postmark
does not return the original Message-ID.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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
    checked_notification_id,
    enhanced_status,
    malformed,
    one_line,
)
from .settings import WebhookSettings

__all__ = ["NAME", "PostmarkReceiver", "receiver", "tracking_headers"]

NAME = "postmark"
CHALLENGE = 'Basic realm="webhooks", charset="UTF-8"'
METADATA_HEADER_PREFIX = "X-PM-Metadata-"
HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
"""Bounce types that will repeat: unknown mailbox, invalid address, deactivated in Postmark."""
DELAYS = frozenset({"Transient"})
"""Delivery delayed; Postmark keeps trying."""
COMPLAINTS = frozenset({"SpamComplaint"})
NOT_BOUNCES = frozenset(
    {
        "AutoResponder", "AddressChange", "ChallengeVerification", "Subscribe", "Unsubscribe",
        "OpenRelayTest", "InboundError",
    }
)  # fmt: skip
"""Records of RecordType Bounce that are replies or inbound matters, not failures to deliver."""
# Every other bounce type (SoftBounce, DnsError, Blocked, SpamNotification, DMARCPolicy, VirusNotification,
# Unknown, ...) is soft: the address may work another time.


def tracking_headers(notification_id: str, settings: WebhookSettings) -> dict[str, str]:
    """An X-PM-Metadata header, returned in each record's Metadata."""
    return {f"{METADATA_HEADER_PREFIX}{NOTIFICATION_ID_KEY}": checked_notification_id(notification_id)}


def receiver(settings: WebhookSettings, client: httpx.AsyncClient) -> PostmarkReceiver:
    """A receiver checking WEBHOOK_POSTMARK_USERNAME and WEBHOOK_POSTMARK_PASSWORD."""
    return PostmarkReceiver(settings)


class PostmarkRecord(BaseModel):
    """A Bounce, SpamComplaint or Delivery record, with the fields read here."""

    record_type: str = Field(alias="RecordType")
    type: str = Field(default="", alias="Type")
    id: int | str | None = Field(default=None, alias="ID")
    message_id: str = Field(default="", alias="MessageID")
    email: str = Field(default="", alias="Email")
    recipient: str = Field(default="", alias="Recipient")
    description: str | None = Field(default=None, alias="Description")
    details: str | None = Field(default=None, alias="Details")
    bounced_at: AwareDatetime | None = Field(default=None, alias="BouncedAt")
    delivered_at: AwareDatetime | None = Field(default=None, alias="DeliveredAt")
    metadata: dict[str, Any] = Field(default={}, alias="Metadata")

    def notification_id(self) -> str | None:
        """The id from Metadata (its key matched without regard to case)."""
        found = next((v for k, v in self.metadata.items() if k.lower() == NOTIFICATION_ID_KEY), None)
        return found if isinstance(found, str) and found else None


class PostmarkReceiver:
    """Checks the basic auth, then reads the record."""

    def __init__(self, settings: WebhookSettings) -> None:
        user, password = settings.postmark_username, settings.postmark_password
        self._expected = (
            None
            if user is None or password is None
            else _digest(f"{user.get_secret_value()}:{password.get_secret_value()}".encode())
        )

    async def receive(self, request: WebhookRequest) -> Received:
        """The event of an authenticated record, or none for a record that is not about delivery."""
        self._authenticate(request.header("Authorization"))
        try:
            record = PostmarkRecord.model_validate_json(request.body)
        except ValidationError as error:
            raise malformed(NAME, "a Postmark record", error) from None
        event = delivery_event(record)
        return Received(events=() if event is None else (event,))

    def _authenticate(self, authorization: str) -> None:
        if self._expected is None:
            raise SignatureError(
                f"{NAME}: WEBHOOK_POSTMARK_USERNAME and WEBHOOK_POSTMARK_PASSWORD are not set, so no request "
                "can be authenticated"
            )
        scheme, _, encoded = authorization.partition(" ")
        try:
            offered = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            offered = b""
        # Digests of the whole user:password pair: one constant-time comparison, whatever the lengths.
        if scheme.lower() != "basic" or not hmac.compare_digest(_digest(offered), self._expected):
            raise SignatureError(
                f"{NAME}: basic auth missing or not WEBHOOK_POSTMARK_USERNAME:WEBHOOK_POSTMARK_PASSWORD",
                challenge=CHALLENGE,
            )


def _digest(credentials: bytes) -> bytes:
    return hashlib.sha256(credentials).digest()


def delivery_event(record: PostmarkRecord) -> DeliveryEvent | None:
    """`record` normalized, or None for a record that is not about delivery."""
    bounce = None
    if record.record_type == "Delivery":
        type_, recipient, at = EventType.DELIVERED, record.recipient, record.delivered_at
        event_id = f"delivery-{record.message_id}"
    elif record.record_type in ("Bounce", "SpamComplaint"):
        recipient, at, event_id = record.email, record.bounced_at, str(record.id or "")
        if record.record_type == "SpamComplaint" or record.type in COMPLAINTS:
            type_ = EventType.COMPLAINED
        elif record.type in DELAYS:
            type_ = EventType.DEFERRED
        elif record.type in NOT_BOUNCES:
            return None
        else:
            type_ = EventType.BOUNCED
            bounce = BounceKind.HARD if record.type in HARD_BOUNCES else BounceKind.SOFT
    else:
        return None  # Open, Click, SubscriptionChange, Inbound
    if not recipient or at is None:
        raise PayloadError(f"{NAME}: {record.record_type} record without its address or time")
    return DeliveryEvent(
        type=type_,
        recipient=recipient.strip(),
        source=NAME,
        occurred_at=at,
        notification_id=record.notification_id(),
        message_id=None,
        bounce=bounce,
        status=enhanced_status(record.details, record.description),
        diagnostic=one_line(record.details or record.description),
        event_id=event_id,
    )
