"""Mailgun webhooks: a signing key made here signs Mailgun's documented payloads; each token is taken once."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
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

NOTIFICATION_ID = "0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5"


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = secrets.token_hex(16)
    monkeypatch.setenv("WEBHOOK_MAILGUN_SIGNING_KEY", value)
    return value


def signature(signing_key: str, timestamp: int | None = None) -> dict[str, str]:
    """A signature block as Mailgun makes one: HMAC-SHA256 of timestamp + token, in hex."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = secrets.token_hex(25)
    digest = hmac.new(signing_key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": stamp, "token": token, "signature": digest}


def event_data(event: str, **fields: Any) -> dict[str, Any]:
    """Mailgun's documented event-data, for a message sent with the service's X-Mailgun-Variables header."""
    variables = json.loads(
        tracking_headers("mailgun", NOTIFICATION_ID, WebhookSettings())["X-Mailgun-Variables"]
    )
    return {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1521233195.375624,
        "log-level": "error",
        "event": event,
        "envelope": {
            "sender": "bob@sandbox.mailgun.org",
            "transport": "smtp",
            "targets": "alice@example.com",
        },
        "flags": {
            "is-routed": False,
            "is-authenticated": True,
            "is-system-test": False,
            "is-test-mode": False,
        },
        "message": {
            "headers": {
                "to": "Alice <alice@example.com>",
                "message-id": f"{NOTIFICATION_ID}@sandbox.mailgun.org",
                "from": "Bob <bob@sandbox.mailgun.org>",
                "subject": "Test webhook",
            },
            "attachments": [],
            "size": 111,
        },
        "recipient": "alice@example.com",
        "recipient-domain": "example.com",
        "tags": ["my_tag_1", "my_tag_2"],
        "user-variables": {"my_var_1": "Mailgun Variable #1", **variables},
    } | fields


PERMANENT = {
    "severity": "permanent",
    "reason": "bounce",
    "delivery-status": {
        "attempt-no": 1,
        "message": "550 5.1.1 The email account that you tried to reach does not exist.",
        "code": 550,
        "description": "",
        "session-seconds": 0.43,
    },
}
TEMPORARY = {
    "severity": "temporary",
    "reason": "generic",
    "delivery-status": {
        "attempt-no": 2,
        "message": "452 4.2.2 The email account that you tried to reach is over quota.",
        "code": 452,
        "description": None,
        "retry-seconds": 900,
    },
}


def posted(signing_key: str, data: dict[str, Any], **block: str) -> WebhookRequest:
    body = {"signature": signature(signing_key) | block, "event-data": data}
    return WebhookRequest(json.dumps(body).encode(), {"content-type": "application/json"})


async def test_failures_deliveries_and_complaints_normalize(signing_key: str) -> None:
    hooks = Webhooks(WebhookSettings())
    events = [
        event
        for data in (
            event_data("failed", **PERMANENT),
            event_data("failed", **TEMPORARY),
            event_data("delivered", **{"delivery-status": {"code": 250, "message": "OK"}}),
            event_data("complained"),
            event_data("opened"),
        )
        for event in (await hooks.receive("mailgun", posted(signing_key, data))).events
    ]
    assert [(e.type, e.bounce, e.status) for e in events] == [
        (EventType.BOUNCED, BounceKind.HARD, "5.1.1"),
        (EventType.BOUNCED, BounceKind.SOFT, "4.2.2"),
        (EventType.DELIVERED, None, ""),
        (EventType.COMPLAINED, None, ""),
    ]
    hard = events[0]
    assert hard.diagnostic == "550 5.1.1 The email account that you tried to reach does not exist."
    assert (hard.notification_id, hard.message_id) == (
        NOTIFICATION_ID,
        f"<{NOTIFICATION_ID}@sandbox.mailgun.org>",
    )
    assert (hard.recipient, hard.source, hard.event_id) == (
        "alice@example.com",
        "mailgun",
        "G9Bn5sl1TC6nu79C8C0bwg",
    )
    assert events[2].diagnostic == "250 OK"


async def test_a_mailgun_code_without_an_smtp_reply_is_kept(signing_key: str) -> None:
    suppressed = {
        "severity": "permanent",
        "reason": "suppress-bounce",
        "delivery-status": {
            "message": "",
            "code": 605,
            "description": "Not delivering to previously bounced address",
        },
    }
    request = posted(signing_key, event_data("failed", **suppressed))
    [event] = (await Webhooks(WebhookSettings()).receive("mailgun", request)).events
    assert (event.bounce, event.status, event.diagnostic) == (
        BounceKind.HARD,
        "",
        "605 Not delivering to previously bounced address",
    )


async def test_a_replayed_token_is_refused(signing_key: str) -> None:
    hooks = Webhooks(WebhookSettings())
    request = posted(signing_key, event_data("failed", **PERMANENT))
    assert len((await hooks.receive("mailgun", request)).events) == 1
    with pytest.raises(SignatureError, match="already used: a replay"):
        await hooks.receive("mailgun", request)


async def test_a_tampered_signature_block_is_refused(signing_key: str) -> None:
    """Mailgun signs timestamp and token (not event-data): changing either breaks the signature."""
    hooks = Webhooks(WebhookSettings())
    block = signature(signing_key)
    for change in ({"token": secrets.token_hex(25)}, {"timestamp": str(int(block["timestamp"]) + 1)}):
        request = posted(signing_key, event_data("failed", **PERMANENT), **(block | change))
        with pytest.raises(SignatureError, match="does not verify"):
            await hooks.receive("mailgun", request)


async def test_a_signature_by_another_key_is_refused(signing_key: str) -> None:
    request = posted(secrets.token_hex(16), event_data("failed", **PERMANENT))
    with pytest.raises(SignatureError, match="does not verify with WEBHOOK_MAILGUN_SIGNING_KEY"):
        await Webhooks(WebhookSettings()).receive("mailgun", request)


async def test_a_stale_timestamp_is_refused(signing_key: str) -> None:
    request = posted(
        signing_key, event_data("failed", **PERMANENT), **signature(signing_key, int(time.time()) - 600)
    )
    with pytest.raises(SignatureError, match="replay window"):
        await Webhooks(WebhookSettings()).receive("mailgun", request)


async def test_a_subaccount_parent_signature_is_accepted(signing_key: str) -> None:
    """A subaccount's domain signs with its own key too; the parent account's key verifies `parent-signature`."""
    block = signature(signing_key)
    block = block | {"signature": "0" * 64, "parent-signature": block["signature"]}
    request = posted(signing_key, event_data("delivered"), **block)
    assert len((await Webhooks(WebhookSettings()).receive("mailgun", request)).events) == 1


async def test_without_a_signing_key_or_signature_requests_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = json.dumps({"event-data": event_data("failed", **PERMANENT)}).encode()
    with pytest.raises(SignatureError, match="WEBHOOK_MAILGUN_SIGNING_KEY is not set"):
        await Webhooks(WebhookSettings()).receive("mailgun", WebhookRequest(body, {}))
    monkeypatch.setenv("WEBHOOK_MAILGUN_SIGNING_KEY", "key-" + secrets.token_hex(16))
    with pytest.raises(SignatureError, match="no signature object"):
        await Webhooks(WebhookSettings()).receive("mailgun", WebhookRequest(body, {}))


async def test_a_body_that_is_not_a_mailgun_event_is_malformed(signing_key: str) -> None:
    hooks = Webhooks(WebhookSettings())
    with pytest.raises(PayloadError, match="not JSON"):
        await hooks.receive("mailgun", WebhookRequest(b"timestamp=1&token=x", {}))
    with pytest.raises(PayloadError, match="recipient"):
        await hooks.receive("mailgun", posted(signing_key, {"event": "failed", "timestamp": 1}))


def test_tracking_headers_carry_the_id_as_a_variable() -> None:
    headers = tracking_headers("mailgun", NOTIFICATION_ID, WebhookSettings())
    assert json.loads(headers["X-Mailgun-Variables"]) == {"notification_id": NOTIFICATION_ID}
