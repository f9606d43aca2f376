"""Amazon SES events through an SNS HTTPS subscription: SNS signatures (versions 1 and 2) and SES event JSON.

SES publishes each event to an SNS topic; SNS posts it here, signed with the key of a certificate
it serves at `SigningCertURL`. That URL must be https on an SNS host (`sns.<region>.amazonaws.com`,
or `.amazonaws.com.cn`) before anything is fetched; certificates are cached per URL. A
`SubscriptionConfirmation` is verified like any message and answered with its `SubscribeURL`, which
the route fetches. Both SES formats are read: event publishing (`eventType`, through a
configuration set, which carries the message tags and so the notification id) and identity
notifications (`notificationType`, Message-ID only).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from datetime import datetime

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from ..events import BounceKind, DeliveryEvent, EventType
from .base import (
    NOTIFICATION_ID_KEY,
    PayloadError,
    Received,
    SignatureError,
    VerificationUnavailableError,
    WebhookRequest,
    check_fresh,
    checked_notification_id,
    enhanced_status,
    malformed,
    message_id,
    one_line,
)
from .settings import WebhookSettings

__all__ = ["NAME", "SesReceiver", "confirm_subscription", "is_sns_url", "receiver", "tracking_headers"]

NAME = "ses"
SNS_HOST = re.compile(r"sns\.[a-z0-9-]{3,}\.amazonaws\.com(\.cn)?")
MAX_CERTIFICATE_BYTES = 64 * 1024
CACHED_CERTIFICATES = 16
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": CONFIRMATION_FIELDS,
}
"""The fields each SNS message type signs, in the order of its canonical string; Subject only when present."""
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
"""SignatureVersion: 1 is SHA1withRSA, 2 SHA256withRSA."""


def tracking_headers(notification_id: str, settings: WebhookSettings) -> dict[str, str]:
    """A message tag with the id (published by a configuration set's event destination), and the set if named."""
    headers = {"X-SES-MESSAGE-TAGS": f"{NOTIFICATION_ID_KEY}={checked_notification_id(notification_id)}"}
    if settings.ses_configuration_set:
        headers["X-SES-CONFIGURATION-SET"] = settings.ses_configuration_set
    return headers


def receiver(settings: WebhookSettings, client: httpx.AsyncClient) -> SesReceiver:
    """A receiver for SNS posts, fetching signing certificates with `client` (its timeout applies)."""
    return SesReceiver(settings, client)


def is_sns_url(url: str) -> bool:
    """Whether `url` is https on an SNS host (`sns.<region>.amazonaws.com[.cn]`), default port, no user.

    Parsed as httpx parses what it fetches, so the check and the fetch see the same host.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return (
        parsed.scheme == "https"
        and SNS_HOST.fullmatch(parsed.host) is not None
        and parsed.port in (None, 443)
        and not parsed.userinfo
    )


async def confirm_subscription(client: httpx.AsyncClient, url: str) -> None:
    """Confirm an SNS subscription by fetching its SubscribeURL; `VerificationUnavailableError` if SNS did not answer 200."""
    if not is_sns_url(url):
        raise SignatureError(f"{NAME}: SubscribeURL is not https on an SNS host")
    try:
        response = await client.get(url)
    except httpx.HTTPError as error:
        raise VerificationUnavailableError(
            f"{NAME}: confirming the subscription failed ({type(error).__name__})"
        ) from None
    if response.status_code != httpx.codes.OK:
        raise VerificationUnavailableError(
            f"{NAME}: SNS answered {response.status_code} to the subscription confirmation"
        )


class SnsMessage(BaseModel):
    """The SNS envelope, as posted."""

    type: str = Field(alias="Type")
    message_id: str = Field(alias="MessageId")
    topic_arn: str = Field(alias="TopicArn")
    message: str = Field(alias="Message")
    timestamp: AwareDatetime = Field(alias="Timestamp")
    subscribe_url: str = Field(default="", alias="SubscribeURL")


class SigningCertificates:
    """SNS signing keys by certificate URL, fetched over verified TLS and kept (the newest CACHED_CERTIFICATES)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    async def key(self, url: str) -> rsa.RSAPublicKey:
        """The public key of the certificate at `url` (already checked with `is_sns_url`)."""
        key = self._keys.get(url)
        if key is None:
            key = _rsa_key(await self._fetch(url))
            self._keys[url] = key
            while len(self._keys) > CACHED_CERTIFICATES:
                self._keys.popitem(last=False)
        self._keys.move_to_end(url)
        return key

    async def _fetch(self, url: str) -> bytes:
        try:
            async with self.client.stream("GET", url) as response:
                if response.status_code != httpx.codes.OK:
                    raise VerificationUnavailableError(
                        f"{NAME}: the signing certificate URL answered {response.status_code}"
                    )
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_CERTIFICATE_BYTES:
                        raise VerificationUnavailableError(f"{NAME}: the signing certificate is too large")
                return data
        except httpx.HTTPError as error:
            raise VerificationUnavailableError(
                f"{NAME}: fetching the signing certificate failed ({type(error).__name__})"
            ) from None


def _rsa_key(pem: bytes) -> rsa.RSAPublicKey:
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise SignatureError(f"{NAME}: SigningCertURL did not hold a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError(f"{NAME}: the signing certificate's key is not RSA")
    return key


class SesReceiver:
    """Verifies SNS posts, then reads the SES events in their `Message`."""

    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.certificates = SigningCertificates(client)

    async def receive(self, request: WebhookRequest) -> Received:
        """Verify the SNS signature, then the events of a notification or the URL confirming a subscription."""
        envelope = _json_object(request.body)
        sns = _sns_message(envelope)
        await self._verify(envelope, sns)
        if sns.type == "SubscriptionConfirmation":
            if not is_sns_url(sns.subscribe_url):
                raise SignatureError(f"{NAME}: SubscribeURL is not https on an SNS host")
            return Received(subscribe_url=sns.subscribe_url)
        if sns.type == "UnsubscribeConfirmation":
            return Received()
        return Received(events=ses_events(_json_object(sns.message.encode(), "Message"), sns.message_id))

    async def _verify(self, envelope: dict[str, object], sns: SnsMessage) -> None:
        """Check in order of cost: the certificate URL, the topic, the timestamp, then the signature."""
        certificate_url, version, signature = (
            envelope.get(name) for name in ("SigningCertURL", "SignatureVersion", "Signature")
        )
        if not isinstance(certificate_url, str) or not isinstance(signature, str) or not signature:
            raise SignatureError(f"{NAME}: no SNS signature (Signature, SigningCertURL)")
        if not is_sns_url(certificate_url):
            raise SignatureError(f"{NAME}: SigningCertURL is not https on an SNS host; not fetched")
        digest = DIGESTS.get(str(version))
        if digest is None:
            raise SignatureError(f"{NAME}: SignatureVersion must be 1 or 2")
        topics = self.settings.ses_topic_arns
        if topics and sns.topic_arn not in topics:
            raise SignatureError(f"{NAME}: the message's TopicArn is not in WEBHOOK_SES_TOPIC_ARNS")
        check_fresh(NAME, sns.timestamp.timestamp(), self.settings.replay_window)
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except binascii.Error:
            raise SignatureError(f"{NAME}: Signature is not base64") from None
        key = await self.certificates.key(certificate_url)
        try:
            key.verify(raw_signature, canonical_string(envelope, sns.type), padding.PKCS1v15(), digest())
        except InvalidSignature:
            raise SignatureError(f"{NAME}: SNS signature does not verify") from None


def canonical_string(envelope: dict[str, object], message_type: str) -> bytes:
    """What SNS signs for `message_type`: each signed field's name and value, a line each."""
    lines: list[str] = []
    for name in SIGNED_FIELDS[message_type]:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise PayloadError(f"{NAME}: SNS {message_type} without {name}")
        lines += [name, value]
    return ("\n".join(lines) + "\n").encode()


def _json_object(body: bytes, what: str = "body") -> dict[str, object]:
    try:
        value = json.loads(body)
    except ValueError:
        raise PayloadError(f"{NAME}: the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise PayloadError(f"{NAME}: the {what} is not a JSON object")
    return value


def _sns_message(envelope: dict[str, object]) -> SnsMessage:
    try:
        sns = SnsMessage.model_validate(envelope)
    except ValidationError as error:
        raise malformed(NAME, "an SNS message", error) from None
    if sns.type not in SIGNED_FIELDS:
        raise PayloadError(f"{NAME}: unknown SNS message Type")
    return sns


# -- SES events ------------------------------------------------------------------------------------


class Recipient(BaseModel):
    address: str = Field(alias="emailAddress")
    status: str | None = None
    diagnostic: str | None = Field(default=None, alias="diagnosticCode")


class Bounce(BaseModel):
    bounce_type: str = Field(alias="bounceType")
    recipients: list[Recipient] = Field(alias="bouncedRecipients")
    timestamp: AwareDatetime
    feedback_id: str = Field(default="", alias="feedbackId")


class Complaint(BaseModel):
    recipients: list[Recipient] = Field(alias="complainedRecipients")
    timestamp: AwareDatetime
    feedback_id: str = Field(default="", alias="feedbackId")
    feedback_type: str | None = Field(default=None, alias="complaintFeedbackType")


class Delivery(BaseModel):
    recipients: list[str]
    timestamp: AwareDatetime
    smtp_response: str | None = Field(default=None, alias="smtpResponse")


class DeliveryDelay(BaseModel):
    recipients: list[Recipient] = Field(alias="delayedRecipients")
    timestamp: AwareDatetime
    delay_type: str | None = Field(default=None, alias="delayType")


class Header(BaseModel):
    name: str
    value: str


class CommonHeaders(BaseModel):
    message_id: str | None = Field(default=None, alias="messageId")


class Mail(BaseModel):
    tags: dict[str, list[str]] = {}
    headers: list[Header] = []
    common_headers: CommonHeaders = Field(default_factory=CommonHeaders, alias="commonHeaders")

    def notification_id(self) -> str | None:
        """The id from the message tag, else from the X-Notification-ID header SES saw."""
        tagged = self.tags.get(NOTIFICATION_ID_KEY)
        if tagged:
            return tagged[0]
        return next(
            (header.value for header in self.headers if header.name.lower() == "x-notification-id"), None
        )

    def message_id(self) -> str | None:
        """The original Message-ID (SES's own id is `mail.messageId`, which the service never saw)."""
        found = self.common_headers.message_id
        if found is None:
            found = next(
                (header.value for header in self.headers if header.name.lower() == "message-id"), None
            )
        return message_id(found)


class SesEvent(BaseModel):
    event_type: str = Field(default="", alias="eventType")
    notification_type: str = Field(default="", alias="notificationType")
    mail: Mail
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    delivery: Delivery | None = None
    delivery_delay: DeliveryDelay | None = Field(default=None, alias="deliveryDelay")


def ses_events(message: dict[str, object], sns_message_id: str) -> tuple[DeliveryEvent, ...]:
    """The `DeliveryEvent`s of one SES event (one per recipient); none for kinds that are not one (Send, Open...)."""
    try:
        event = SesEvent.model_validate(message)
    except ValidationError as error:
        raise malformed(NAME, "an SES event", error) from None
    kind = event.event_type or event.notification_type
    if kind == "Bounce" and event.bounce is not None:
        bounce = event.bounce
        # Transient, and Undetermined (SES could not tell), may pass another time.
        kind_of = BounceKind.HARD if bounce.bounce_type == "Permanent" else BounceKind.SOFT
        return tuple(
            _event(
                event,
                EventType.BOUNCED,
                r.address,
                bounce.timestamp,
                bounce.feedback_id or sns_message_id,
                bounce=kind_of,
                status=enhanced_status(r.status, r.diagnostic),
                diagnostic=one_line(r.diagnostic),
            )
            for r in bounce.recipients
        )
    if kind == "Complaint" and event.complaint is not None:
        complaint = event.complaint
        return tuple(
            _event(
                event,
                EventType.COMPLAINED,
                r.address,
                complaint.timestamp,
                complaint.feedback_id or sns_message_id,
                diagnostic=one_line(complaint.feedback_type),
            )
            for r in complaint.recipients
        )
    if kind == "Delivery" and event.delivery is not None:
        delivery = event.delivery
        return tuple(
            _event(
                event,
                EventType.DELIVERED,
                address,
                delivery.timestamp,
                sns_message_id,
                status=enhanced_status(delivery.smtp_response),
                diagnostic=one_line(delivery.smtp_response),
            )
            for address in delivery.recipients
        )
    if kind == "DeliveryDelay" and event.delivery_delay is not None:
        delay = event.delivery_delay
        return tuple(
            _event(
                event,
                EventType.DEFERRED,
                r.address,
                delay.timestamp,
                sns_message_id,
                status=enhanced_status(r.status, r.diagnostic),
                diagnostic=one_line(delay.delay_type, r.diagnostic),
            )
            for r in delay.recipients
        )
    return ()


def _event(
    event: SesEvent,
    type_: EventType,
    recipient: str,
    at: datetime,
    event_id: str,
    *,
    bounce: BounceKind | None = None,
    status: str = "",
    diagnostic: str = "",
) -> DeliveryEvent:
    return DeliveryEvent(
        type=type_,
        recipient=recipient.strip(),
        source=NAME,
        occurred_at=at,
        notification_id=event.mail.notification_id(),
        message_id=event.mail.message_id(),
        bounce=bounce,
        status=status,
        diagnostic=diagnostic,
        event_id=event_id,
    )
