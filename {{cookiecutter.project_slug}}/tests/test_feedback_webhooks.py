"""The whole loop per provider: a notification sent through a real SMTP server, the provider's signed bounce
posted to the running service, the address suppressed, the next notification to it `suppressed`; a
tampered body, a wrong key and a replayed timestamp are 401 and store nothing (the provider's scheme
permitting: Mailgun signs no body, Postmark signs nothing but sends basic auth)."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.feedback.webhooks import Webhooks, WebhookSettings, tracking_headers

from .conftest import auth, service
from .smtp_server import SmtpServer
from .sns_server import SnsServer, iso_now, running_sns
from .test_outbox import wait_for_status
from .test_webhooks_mailgun import PERMANENT, TEMPORARY, signature
from .test_webhooks_postmark import bounce as postmark_bounce
from .test_webhooks_sendgrid import public_key_text
from .test_webhooks_ses import bounce as ses_bounce
from .test_webhooks_ses import tags_as_ses_publishes

MAILGUN_KEY = secrets.token_hex(16)
POSTMARK = ("postmark", secrets.token_urlsafe(18))
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
Posted = tuple[bytes, dict[str, str]]


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsServer]:
    with running_sns(trustme.CA()) as server:
        yield server


@pytest.fixture
def client(smtp_server: SmtpServer, sns: SnsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The service with every provider's webhook configured; SES certificates come from the local SNS host."""
    env = {
        "WEBHOOK_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
        "WEBHOOK_POSTMARK_USERNAME": POSTMARK[0],
        "WEBHOOK_POSTMARK_PASSWORD": POSTMARK[1],
        "WEBHOOK_SENDGRID_PUBLIC_KEY": public_key_text(SENDGRID_KEY),
        "SUPPRESSION_SOFT_BOUNCES": "2",
    }
    with service(monkeypatch, **env) as test_client:
        hooks = test_client.app.state.webhooks  # type: ignore[attr-defined]
        test_client.app.state.webhooks = Webhooks(WebhookSettings(), sns.client())  # type: ignore[attr-defined]
        yield test_client
        test_client.app.state.webhooks = hooks  # type: ignore[attr-defined]


def mailgun(
    notification_id: str, recipient: str, *, fault: str = "", data: dict[str, Any] | None = None
) -> Posted:
    variables = json.loads(
        tracking_headers("mailgun", notification_id, WebhookSettings())["X-Mailgun-Variables"]
    )
    block = signature(MAILGUN_KEY if fault != "key" else secrets.token_hex(16))
    if fault == "replay":
        block = signature(MAILGUN_KEY, int(time.time()) - 600)
    if fault == "tamper":
        block["token"] = secrets.token_hex(25)  # the signed part of a Mailgun request
    event = {
        "id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "event": "failed",
        "recipient": recipient,
        "user-variables": variables,
        **(data or PERMANENT),
    }
    return json.dumps({"signature": block, "event-data": event}).encode(), {
        "content-type": "application/json"
    }


def sendgrid(notification_id: str, recipient: str, *, fault: str = "") -> Posted:
    args = json.loads(tracking_headers("sendgrid", notification_id, WebhookSettings())["X-SMTPAPI"])[
        "unique_args"
    ]
    event = {
        "email": recipient,
        "timestamp": int(time.time()),
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "sg_event_id": uuid.uuid4().hex,
        "smtp-id": f"<{notification_id}@example.com>",
        **args,
    }
    body = json.dumps([event]).encode()
    stamp = str(int(time.time()) - (600 if fault == "replay" else 0))
    key = ec.generate_private_key(ec.SECP256R1()) if fault == "key" else SENDGRID_KEY
    signed = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    if fault == "tamper":
        body = body.replace(b"5.1.1", b"5.1.2")
    headers = {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signed).decode(),
        "x-twilio-email-event-webhook-timestamp": stamp,
        "content-type": "application/json",
    }
    return body, headers


def postmark(notification_id: str, recipient: str, *, fault: str = "") -> Posted:
    [(header, value)] = tracking_headers("postmark", notification_id, WebhookSettings()).items()
    record = postmark_bounce(
        "HardBounce",
        "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        Email=recipient,
        ID=secrets.randbelow(10**12),
        Metadata={header.removeprefix("X-PM-Metadata-"): value},
        BouncedAt=iso_now(),
    )
    password = POSTMARK[1] if fault != "key" else "wrong-password"
    authorization = "Basic " + base64.b64encode(f"{POSTMARK[0]}:{password}".encode()).decode()
    return json.dumps(record).encode(), {"authorization": authorization, "content-type": "application/json"}


def ses(sns: SnsServer) -> Callable[..., Posted]:
    def posted(notification_id: str, recipient: str, *, fault: str = "") -> Posted:
        record = ses_bounce("Permanent", "5.1.1", "smtp; 550 5.1.1 user unknown")
        record["bounce"]["bouncedRecipients"][0]["emailAddress"] = recipient
        record["bounce"]["timestamp"] = iso_now()
        tags = tags_as_ses_publishes(
            tracking_headers("ses", notification_id, WebhookSettings())["X-SES-MESSAGE-TAGS"]
        )
        record["mail"]["tags"] = tags
        record["mail"]["commonHeaders"]["messageId"] = f"<{notification_id}@example.com>"
        envelope = sns.notification(record, Timestamp=iso_now(-600 if fault == "replay" else 0))
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048) if fault == "key" else None
        body = sns.sign(envelope, "2", key=other)
        if fault == "tamper":
            body = body.replace(b"5.1.1", b"5.1.2")
        return body, {"x-amz-sns-message-type": "Notification", "content-type": "text/plain"}

    return posted


def send(client: TestClient, recipient: str) -> str:
    response = client.post(
        "/notifications", json={"to": [recipient], "subject": "Hi", "body": "Hello"}, headers=auth()
    )
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


def suppressions(client: TestClient) -> dict[str, dict[str, Any]]:
    return {item["address"]: item for item in client.get("/suppressions", headers=auth()).json()["items"]}


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun", "postmark"])
def test_a_signed_bounce_suppresses_the_address_and_bad_requests_store_nothing(
    provider: str, client: TestClient, sns: SnsServer
) -> None:
    make = {"ses": ses(sns), "sendgrid": sendgrid, "mailgun": mailgun, "postmark": postmark}[provider]
    recipient = "dead@example.com"
    notification_id = send(client, recipient)
    wait_for_status(client, notification_id, "sent")

    faults = {"postmark": ["key"], "mailgun": ["tamper", "key", "replay"]}.get(
        provider, ["tamper", "key", "replay"]
    )
    for fault in faults:
        body, headers = make(notification_id, recipient, fault=fault)
        response = client.post(f"/webhooks/{provider}", content=body, headers=headers)
        assert response.status_code == 401, (fault, response.text)
    assert suppressions(client) == {}
    metrics = client.get("/metrics", headers=auth()).text
    assert 'feedback_webhook_signature_failures_total{provider="' + provider + '"}' in metrics
    answer = client.get(f"/notifications/{notification_id}", headers=auth()).json()
    assert [event["type"] for event in answer["recipients"][0]["events"]] == ["sent"]

    body, headers = make(notification_id, recipient)
    response = client.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert client.post(f"/webhooks/{provider}", content=body, headers=headers).status_code in (200, 401)
    entry = suppressions(client)[recipient]
    assert (entry["reason"], entry["event"]["source"], entry["event"]["notification_id"]) == (
        "hard_bounce",
        provider,
        notification_id,
    )
    history = client.get(f"/notifications/{notification_id}", headers=auth()).json()["recipients"][0]
    assert history["state"] == "bounced"
    assert [event["type"] for event in history["events"]] == ["sent", "bounced"]
    assert history["events"][1]["bounce"] == "hard"

    wait_for_status(client, send(client, recipient), "suppressed")


def test_unmatched_events_are_answered_and_not_stored(client: TestClient) -> None:
    notification_id = send(client, "alice@example.com")
    wait_for_status(client, notification_id, "sent")
    for body, headers in (
        mailgun(uuid.uuid4().hex, "alice@example.com"),  # no such notification
        mailgun(notification_id, "mallory@example.com"),  # not its recipient
    ):
        assert client.post("/webhooks/mailgun", content=body, headers=headers).status_code == 200
    assert suppressions(client) == {}
    metrics = client.get("/metrics", headers=auth()).text
    assert 'feedback_events_unmatched_total{source="mailgun"}' in metrics


def test_complaints_suppress_at_once_and_soft_bounces_after_the_configured_count(client: TestClient) -> None:
    complained = send(client, "angry@example.com")
    soft = send(client, "full@example.com")
    for notification_id in (complained, soft):
        wait_for_status(client, notification_id, "sent")
    body, headers = mailgun(complained, "angry@example.com", data={"event": "complained"})
    assert client.post("/webhooks/mailgun", content=body, headers=headers).status_code == 200
    assert suppressions(client)["angry@example.com"]["reason"] == "complaint"

    body, headers = mailgun(soft, "full@example.com", data=TEMPORARY)
    assert client.post("/webhooks/mailgun", content=body, headers=headers).status_code == 200
    assert "full@example.com" not in suppressions(client)  # 1 of SUPPRESSION_SOFT_BOUNCES=2
    body, headers = mailgun(soft, "full@example.com", data=TEMPORARY)
    assert client.post("/webhooks/mailgun", content=body, headers=headers).status_code == 200
    entry = suppressions(client)["full@example.com"]
    assert (entry["reason"], entry["event"]["soft_bounces"]) == ("hard_bounce", 2)
