"""Postmark webhooks: basic auth with credentials made here, Postmark's documented records normalized."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest

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

NOTIFICATION_ID = "5e4d3c2b1a0f49e8d7c6b5a4f3e2d1c0"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    user, password = "postmark", secrets.token_urlsafe(18)
    monkeypatch.setenv("WEBHOOK_POSTMARK_USERNAME", user)
    monkeypatch.setenv("WEBHOOK_POSTMARK_PASSWORD", password)
    return user, password


def posted(record: dict[str, Any], user: str, password: str) -> WebhookRequest:
    authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return WebhookRequest(json.dumps(record).encode(), {"authorization": authorization})


def metadata() -> dict[str, str]:
    """What Postmark returns as Metadata for a message sent with the service's X-PM-Metadata header."""
    [(header, value)] = tracking_headers("postmark", NOTIFICATION_ID, WebhookSettings()).items()
    return {"a_key": "a_value", header.removeprefix("X-PM-Metadata-"): value}


def bounce(type_: str, details: str, **fields: Any) -> dict[str, Any]:
    """Postmark's documented Bounce webhook record."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": type_,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": metadata(),
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": details,
        "Email": "john@example.com",
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
    } | fields


SPAM_COMPLAINT = {
    "RecordType": "SpamComplaint",
    "MessageStream": "outbound",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 100001,
    "Name": "Spam complaint",
    "Tag": "Test",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "ServerID": 1234,
    "Description": "",
    "Details": "Test spam complaint details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": False,
    "Subject": "Test subject",
    "Content": "<Abuse report dump>",
}
DELIVERY = {
    "RecordType": "Delivery",
    "ServerID": 23,
    "MessageStream": "outbound",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Recipient": "john@example.com",
    "Tag": "welcome-email",
    "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
    "Details": "Test delivery webhook details",
}


async def test_records_normalize_by_postmark_bounce_type(credentials: tuple[str, str]) -> None:
    hooks = Webhooks(WebhookSettings())
    records = [
        bounce("HardBounce", "smtp;550 5.1.1 The email account that you tried to reach does not exist."),
        bounce("SoftBounce", "smtp;452 4.2.2 The email account that you tried to reach is over quota."),
        bounce("BadEmailAddress", "Invalid email address"),
        bounce("Transient", "Message delayed"),
        bounce("DnsError", "temporary DNS error"),
        bounce("AutoResponder", "Out of office"),
        SPAM_COMPLAINT | {"Metadata": metadata()},
        DELIVERY | {"Metadata": metadata()},
        {"RecordType": "Open", "MessageID": "x", "Recipient": "john@example.com"},
    ]
    events = [
        event
        for record in records
        for event in (await hooks.receive("postmark", posted(record, *credentials))).events
    ]
    assert [(e.type, e.bounce, e.status) for e in events] == [
        (EventType.BOUNCED, BounceKind.HARD, "5.1.1"),
        (EventType.BOUNCED, BounceKind.SOFT, "4.2.2"),
        (EventType.BOUNCED, BounceKind.HARD, ""),
        (EventType.DEFERRED, None, ""),
        (EventType.BOUNCED, BounceKind.SOFT, ""),
        (EventType.COMPLAINED, None, ""),
        (EventType.DELIVERED, None, ""),
    ]
    hard = events[0]
    assert hard.diagnostic == "smtp;550 5.1.1 The email account that you tried to reach does not exist."
    assert (hard.notification_id, hard.message_id, hard.event_id) == (
        NOTIFICATION_ID,
        None,
        "4323372036854775807",
    )
    assert (hard.recipient, hard.source) == ("john@example.com", "postmark")
    assert hard.occurred_at.isoformat() == "2019-11-05T16:33:54.907025+00:00"
    assert {event.notification_id for event in events} == {NOTIFICATION_ID}


@pytest.mark.parametrize("wrong", ["user", "password"])
async def test_wrong_credentials_are_refused_with_a_challenge(
    credentials: tuple[str, str], wrong: str
) -> None:
    user, password = credentials
    request = posted(
        DELIVERY, user + "x" if wrong == "user" else user, password + "x" if wrong == "password" else password
    )
    with pytest.raises(SignatureError, match="basic auth") as refused:
        await Webhooks(WebhookSettings()).receive("postmark", request)
    assert refused.value.challenge.startswith("Basic ")
    assert password not in str(refused.value)


async def test_a_request_without_credentials_is_refused(credentials: tuple[str, str]) -> None:
    for authorization in ({}, {"authorization": "Bearer abc"}, {"authorization": "Basic not-base64!"}):
        with pytest.raises(SignatureError, match="basic auth missing"):
            await Webhooks(WebhookSettings()).receive("postmark", WebhookRequest(b"{}", authorization))


async def test_without_credentials_configured_every_request_is_refused() -> None:
    with pytest.raises(
        SignatureError, match="WEBHOOK_POSTMARK_USERNAME and WEBHOOK_POSTMARK_PASSWORD are not set"
    ):
        await Webhooks(WebhookSettings()).receive("postmark", posted(DELIVERY, "postmark", "anything"))


async def test_an_authenticated_body_that_is_not_a_record_is_malformed(credentials: tuple[str, str]) -> None:
    with pytest.raises(PayloadError, match="not a Postmark record"):
        await Webhooks(WebhookSettings()).receive("postmark", posted({"Type": "HardBounce"}, *credentials))
    with pytest.raises(PayloadError, match="without its address or time"):
        await Webhooks(WebhookSettings()).receive(
            "postmark", posted({"RecordType": "Delivery"}, *credentials)
        )


def test_tracking_headers_carry_the_id_as_metadata() -> None:
    assert tracking_headers("postmark", NOTIFICATION_ID, WebhookSettings()) == {
        "X-PM-Metadata-notification_id": NOTIFICATION_ID
    }
