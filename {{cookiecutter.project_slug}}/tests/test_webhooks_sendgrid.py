"""SendGrid's signed Event Webhook: a P-256 key pair made here signs SendGrid's documented events."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from {{ cookiecutter.package_name }}.feedback.events import BounceKind, EventType
from {{ cookiecutter.package_name }}.feedback.webhooks import (
    PayloadError,
    SignatureError,
    WebhookRequest,
    Webhooks,
    WebhookSettings,
    tracking_headers,
)

pytestmark = pytest.mark.anyio

NOTIFICATION_ID = "7d2c0f3b4a5e4f6a9b8c7d6e5f4a3b2c"
SMTP_ID = f"<{NOTIFICATION_ID}@example.com>"


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid shows it: base64 of its DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    """SendGrid's signing key; WEBHOOK_SENDGRID_PUBLIC_KEY holds its public half."""
    private = ec.generate_private_key(ec.SECP256R1())
    monkeypatch.setenv("WEBHOOK_SENDGRID_PUBLIC_KEY", public_key_text(private))
    return private


def signed(body: bytes, key: ec.EllipticCurvePrivateKey, timestamp: int | None = None) -> WebhookRequest:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": stamp,
        "content-type": "application/json",
    }
    return WebhookRequest(body, headers)


def events_for_a_sent_message() -> list[dict[str, Any]]:
    """SendGrid's documented event examples for a message sent with the service's X-SMTPAPI header."""
    smtpapi = json.loads(tracking_headers("sendgrid", NOTIFICATION_ID, WebhookSettings())["X-SMTPAPI"])
    common = {"smtp-id": SMTP_ID, "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}
    examples: list[dict[str, Any]] = [
        {"email": "example@test.com", "timestamp": 1513299569, "event": "processed", "category": "cat facts"},
        {"email": "dropped@test.com", "timestamp": 1513299569, "event": "dropped", "reason": "Bounced Address", "status": "5.0.0"},
        {"email": "spam-content@test.com", "timestamp": 1513299569, "event": "dropped", "reason": "Spam Content (if spam checker app is enabled)"},
        {"email": "deferred@test.com", "timestamp": 1513299569, "event": "deferred", "response": "400 try again later", "attempt": "5"},
        {"email": "delivered@test.com", "timestamp": 1513299569, "event": "delivered", "response": "250 OK"},
        {"email": "bounce@test.com", "timestamp": 1513299569, "event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 The email account that you tried to reach does not exist."},
        {"email": "blocked@test.com", "timestamp": 1513299569, "event": "bounce", "type": "blocked", "status": "4.0.0", "reason": "421 4.7.0 Try again later, closing connection."},
        {"email": "spam@test.com", "timestamp": 1513299569, "event": "spamreport"},
        {"email": "open@test.com", "timestamp": 1513299569, "event": "open", "useragent": "Mozilla/4.0", "ip": "255.255.255.255"},
        {"timestamp": 1513299569, "event": "account_status_change", "type": "compliance_suspend"},
    ]  # fmt: skip
    return [
        example | common | {"sg_event_id": f"event-{index}"} | smtpapi["unique_args"]
        for index, example in enumerate(examples)
    ]


async def test_delivery_events_normalize_with_bounce_kind_status_and_ids(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    body = json.dumps(events_for_a_sent_message()).encode()
    received = await Webhooks(WebhookSettings()).receive("sendgrid", signed(body, key))
    assert [(e.recipient, e.type, e.bounce, e.status) for e in received.events] == [
        ("dropped@test.com", EventType.BOUNCED, BounceKind.HARD, "5.0.0"),
        ("spam-content@test.com", EventType.BOUNCED, BounceKind.SOFT, ""),
        ("deferred@test.com", EventType.DEFERRED, None, ""),
        ("delivered@test.com", EventType.DELIVERED, None, ""),
        ("bounce@test.com", EventType.BOUNCED, BounceKind.HARD, "5.1.1"),
        ("blocked@test.com", EventType.BOUNCED, BounceKind.SOFT, "4.0.0"),
        ("spam@test.com", EventType.COMPLAINED, None, ""),
    ]
    bounce = received.events[4]
    assert bounce.diagnostic == "550 5.1.1 The email account that you tried to reach does not exist."
    assert (bounce.notification_id, bounce.message_id, bounce.event_id) == (
        NOTIFICATION_ID,
        SMTP_ID,
        "event-5",
    )
    assert received.events[2].diagnostic == "400 try again later"
    assert bounce.occurred_at.timestamp() == 1513299569
    assert {event.source for event in received.events} == {"sendgrid"}


async def test_a_tampered_body_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    request = signed(json.dumps(events_for_a_sent_message()).encode(), key)
    tampered = WebhookRequest(request.body.replace(b"blocked@test.com", b"victim@test.com"), request.headers)
    with pytest.raises(SignatureError, match="does not verify"):
        await Webhooks(WebhookSettings()).receive("sendgrid", tampered)


async def test_a_signature_by_another_key_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match="does not verify"):
        await Webhooks(WebhookSettings()).receive("sendgrid", signed(b"[]", other))


@pytest.mark.parametrize("age", [600, -600])
async def test_a_timestamp_outside_the_replay_window_is_refused(
    key: ec.EllipticCurvePrivateKey, age: int
) -> None:
    request = signed(b"[]", key, timestamp=int(time.time()) - age)
    with pytest.raises(SignatureError, match="replay window"):
        await Webhooks(WebhookSettings()).receive("sendgrid", request)


async def test_a_request_without_the_signature_headers_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(SignatureError, match="no X-Twilio-Email-Event-Webhook-Signature"):
        await Webhooks(WebhookSettings()).receive("sendgrid", WebhookRequest(b"[]", {}))


async def test_without_a_public_key_every_request_is_refused() -> None:
    with pytest.raises(SignatureError, match="WEBHOOK_SENDGRID_PUBLIC_KEY is not set"):
        await Webhooks(WebhookSettings()).receive("sendgrid", WebhookRequest(b"[]", {}))


async def test_a_signed_body_that_is_not_an_event_batch_is_malformed(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(PayloadError, match="not a SendGrid event batch"):
        await Webhooks(WebhookSettings()).receive("sendgrid", signed(b'{"event": "bounce"}', key))
    with pytest.raises(PayloadError, match="email"):
        await Webhooks(WebhookSettings()).receive(
            "sendgrid", signed(b'[{"event": "bounce", "timestamp": 1}]', key)
        )


def test_tracking_headers_carry_the_id_as_a_unique_argument() -> None:
    headers = tracking_headers("sendgrid", NOTIFICATION_ID, WebhookSettings())
    assert json.loads(headers["X-SMTPAPI"]) == {"unique_args": {"notification_id": NOTIFICATION_ID}}
