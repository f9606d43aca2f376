"""Amazon SES through SNS: real signatures (versions 1 and 2) checked against a certificate fetched over
real TLS from a local SNS host, and SES's documented event records normalized.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from {{ cookiecutter.package_name }}.feedback.events import BounceKind, EventType
from {{ cookiecutter.package_name }}.feedback.webhooks import (
    PayloadError,
    SignatureError,
    VerificationUnavailableError,
    WebhookRequest,
    Webhooks,
    WebhookSettings,
    tracking_headers,
)

from .sns_server import HOST, TOPIC, SnsServer, iso_now, running_sns

pytestmark = pytest.mark.anyio

NOTIFICATION_ID = "3f0c5b7e9a1d4c2b8e6f0a1b2c3d4e5f"
MESSAGE_ID = f"<{NOTIFICATION_ID}@example.com>"


@pytest.fixture(scope="module")
def sns_host() -> Iterator[SnsServer]:
    with running_sns(trustme.CA()) as server:
        yield server


@pytest.fixture
def sns(sns_host: SnsServer) -> SnsServer:
    """The module's SNS host, with no request recorded yet (each test's `Webhooks` has its own cache)."""
    sns_host.requests.clear()
    return sns_host


@pytest.fixture
async def webhooks(sns: SnsServer) -> AsyncIterator[Webhooks]:
    async with sns.client() as client:
        hooks = Webhooks(WebhookSettings(), client)
        yield hooks
        await hooks.aclose()


def request(body: bytes) -> WebhookRequest:
    return WebhookRequest(body, {"x-amz-sns-message-type": "Notification", "content-type": "text/plain"})


def tags_as_ses_publishes(header: str) -> dict[str, list[str]]:
    """The message tags of an X-SES-MESSAGE-TAGS header, as `mail.tags` shows them."""
    pairs = (item.strip().split("=", 1) for item in header.split(","))
    return {name: [value] for name, value in pairs}


def mail(**extra: Any) -> dict[str, Any]:
    """The `mail` object of SES's documented records, for a message sent with the service's headers."""
    headers = tracking_headers("ses", NOTIFICATION_ID, WebhookSettings())
    return {
        "timestamp": "2017-08-05T00:40:02.012Z",
        "source": "Sender Name <sender@example.com>",
        "sendingAccountId": "123456789012",
        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "destination": ["recipient@example.com"],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Sender Name <sender@example.com>"},
            {"name": "To", "value": "recipient@example.com"},
            {"name": "Message-ID", "value": MESSAGE_ID},
        ],
        "commonHeaders": {
            "from": ["Sender Name <sender@example.com>"],
            "to": ["recipient@example.com"],
            "messageId": MESSAGE_ID,
            "subject": "Message sent from Amazon SES",
        },
        "tags": {
            "ses:configuration-set": ["ConfigSet"],
            "ses:source-ip": ["192.0.2.0"],
            **tags_as_ses_publishes(headers["X-SES-MESSAGE-TAGS"]),
        },
    } | extra


def bounce(bounce_type: str, status: str, diagnostic: str) -> dict[str, Any]:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "recipient@example.com",
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": diagnostic,
                }
            ],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": mail(),
    }


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_permanent_bounce_is_hard_with_status_diagnostic_and_ids(
    sns: SnsServer, webhooks: Webhooks, version: str
) -> None:
    body = sns.sign(sns.notification(bounce("Permanent", "5.1.1", "smtp; 550 5.1.1 user unknown")), version)
    received = await webhooks.receive("ses", request(body))
    [event] = received.events
    assert (event.type, event.bounce, event.recipient) == (
        EventType.BOUNCED,
        BounceKind.HARD,
        "recipient@example.com",
    )
    assert (event.status, event.diagnostic) == ("5.1.1", "smtp; 550 5.1.1 user unknown")
    assert (event.notification_id, event.message_id, event.source) == (NOTIFICATION_ID, MESSAGE_ID, "ses")
    assert event.occurred_at.isoformat() == "2017-08-05T00:41:02.669000+00:00"
    assert event.event_id == "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000"
    assert sns.requests == [sns.certificate_url.removeprefix(f"https://{HOST}")]


async def test_a_transient_bounce_is_soft(sns: SnsServer, webhooks: Webhooks) -> None:
    record = bounce("Transient", "4.2.2", "smtp; 452 4.2.2 mailbox full")
    [event] = (await webhooks.receive("ses", request(sns.sign(sns.notification(record), "2")))).events
    assert (event.type, event.bounce, event.status) == (EventType.BOUNCED, BounceKind.SOFT, "4.2.2")


async def test_complaint_delivery_and_delay(sns: SnsServer, webhooks: Webhooks) -> None:
    complaint = {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "userAgent": "Mozilla/5.0",
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2017-08-05T00:41:02.669Z",
        },
        "mail": mail(),
    }
    delivery = {
        "eventType": "Delivery",
        "delivery": {
            "timestamp": "2016-10-19T23:21:04.133Z",
            "processingTimeMillis": 11893,
            "recipients": ["recipient@example.com"],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta.example.com",
        },
        "mail": mail(),
    }
    delay = {
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "timestamp": "2020-06-16T00:15:40.641Z",
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2020-06-16T00:25:40.914Z",
            "delayedRecipients": [
                {
                    "emailAddress": "recipient@example.com",
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
                }
            ],
        },
        "mail": mail(),
    }
    events = [
        event
        for record in (complaint, delivery, delay)
        for event in (await webhooks.receive("ses", request(sns.sign(sns.notification(record))))).events
    ]
    assert [(e.type, e.bounce, e.status, e.notification_id) for e in events] == [
        (EventType.COMPLAINED, None, "", NOTIFICATION_ID),
        (EventType.DELIVERED, None, "2.6.0", NOTIFICATION_ID),
        (EventType.DEFERRED, None, "4.4.1", NOTIFICATION_ID),
    ]
    assert events[0].diagnostic == "abuse"
    assert (
        events[2].diagnostic
        == "TransientCommunicationFailure smtp; 421 4.4.1 Unable to connect to remote host"
    )
    assert len(sns.requests) == 1, "the certificate is fetched once, then cached"


async def test_an_identity_notification_without_tags_matches_by_message_id(
    sns: SnsServer, webhooks: Webhooks
) -> None:
    record = bounce("Permanent", "5.1.1", "smtp; 550 5.1.1 user unknown")
    record["notificationType"] = record.pop("eventType")
    record["mail"] = mail(tags={}, headers=[])
    [event] = (await webhooks.receive("ses", request(sns.sign(sns.notification(record))))).events
    assert (event.notification_id, event.message_id) == (None, MESSAGE_ID)


async def test_events_that_are_not_about_delivery_are_skipped(sns: SnsServer, webhooks: Webhooks) -> None:
    record = {"eventType": "Open", "open": {"timestamp": "2017-08-09T22:00:19.652Z"}, "mail": mail()}
    assert (await webhooks.receive("ses", request(sns.sign(sns.notification(record))))).events == ()


async def test_a_tampered_message_is_refused(sns: SnsServer, webhooks: Webhooks) -> None:
    body = json.loads(sns.sign(sns.notification(bounce("Transient", "4.2.2", "mailbox full"))))
    body["Message"] = body["Message"].replace("Transient", "Permanent")
    with pytest.raises(SignatureError, match="does not verify"):
        await webhooks.receive("ses", request(json.dumps(body).encode()))


async def test_a_signature_by_another_key_is_refused(sns: SnsServer, webhooks: Webhooks) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = sns.sign(sns.notification(bounce("Permanent", "5.1.1", "user unknown")), "2", key=other)
    with pytest.raises(SignatureError, match="does not verify"):
        await webhooks.receive("ses", request(body))


async def test_a_stale_message_is_refused_before_any_fetch(sns: SnsServer, webhooks: Webhooks) -> None:
    envelope = sns.notification(bounce("Permanent", "5.1.1", "user unknown"), Timestamp=iso_now(-600))
    with pytest.raises(SignatureError, match="replay window"):
        await webhooks.receive("ses", request(sns.sign(envelope)))
    assert sns.requests == []


@pytest.mark.parametrize(
    "url",
    [
        f"http://{HOST}/SimpleNotificationService-1.pem",
        f"https://{HOST}.attacker.example/SimpleNotificationService-1.pem",
        f"https://attacker.example/{HOST}/SimpleNotificationService-1.pem",
        f"https://{HOST}:8443/SimpleNotificationService-1.pem",
        f"https://user@{HOST}/SimpleNotificationService-1.pem",
        "https://s3.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com.cn.attacker.example/x.pem",
    ],
)
async def test_a_certificate_url_off_the_sns_hosts_is_refused_unfetched(
    sns: SnsServer, webhooks: Webhooks, url: str
) -> None:
    envelope = sns.notification(bounce("Permanent", "5.1.1", "user unknown"), SigningCertURL=url)
    with pytest.raises(SignatureError, match="not https on an SNS host; not fetched"):
        await webhooks.receive("ses", request(sns.sign(envelope)))
    assert sns.requests == []


async def test_a_certificate_from_an_untrusted_server_is_not_used(sns: SnsServer) -> None:
    """The client trusts only the system CAs: the TLS check fails, so nothing is verified (503, retried)."""
    async with sns.client(trust_ca=False) as client:
        hooks = Webhooks(WebhookSettings(), client)
        with pytest.raises(VerificationUnavailableError, match="ConnectError"):
            await hooks.receive("ses", request(sns.sign(sns.notification(bounce("Permanent", "5.1.1", "x")))))


async def test_only_the_listed_topics_are_accepted(sns: SnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SES_TOPIC_ARNS", "arn:aws:sns:us-east-1:123456789012:other-topic")
    async with sns.client() as client:
        hooks = Webhooks(WebhookSettings(), client)
        with pytest.raises(SignatureError, match="not in WEBHOOK_SES_TOPIC_ARNS"):
            await hooks.receive("ses", request(sns.sign(sns.notification(bounce("Permanent", "5.1.1", "x")))))
        monkeypatch.setenv(
            "WEBHOOK_SES_TOPIC_ARNS", f"arn:aws:sns:us-east-1:123456789012:other-topic,{TOPIC}"
        )
        hooks = Webhooks(WebhookSettings(), client)
        received = await hooks.receive(
            "ses", request(sns.sign(sns.notification(bounce("Permanent", "5.1.1", "x"))))
        )
    assert len(received.events) == 1
    assert len(sns.requests) == 1, "a refused topic fetches nothing"


async def test_a_subscription_is_confirmed_at_its_subscribe_url(sns: SnsServer, webhooks: Webhooks) -> None:
    envelope = sns.subscription_confirmation()
    received = await webhooks.receive("ses", request(sns.sign(envelope, "2")))
    assert (received.events, received.subscribe_url) == ((), envelope["SubscribeURL"])
    await webhooks.confirm_subscription(received.subscribe_url)
    assert sns.requests[-1] == envelope["SubscribeURL"].removeprefix(f"https://{HOST}")


async def test_a_subscribe_url_off_the_sns_hosts_is_refused(sns: SnsServer, webhooks: Webhooks) -> None:
    envelope = sns.subscription_confirmation(
        SubscribeURL="https://attacker.example/?Action=ConfirmSubscription"
    )
    with pytest.raises(SignatureError, match="SubscribeURL"):
        await webhooks.receive("ses", request(sns.sign(envelope)))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"SignatureVersion": "3"}, "SignatureVersion must be 1 or 2"),
        ({"Signature": ""}, "no SNS signature"),
        ({"Signature": "not base64!"}, "not base64"),
    ],
)
async def test_an_unusable_signature_is_refused(
    sns: SnsServer, webhooks: Webhooks, change: dict[str, str], error: str
) -> None:
    body = json.loads(sns.sign(sns.notification(bounce("Permanent", "5.1.1", "x")))) | change
    with pytest.raises(SignatureError, match=error):
        await webhooks.receive("ses", request(json.dumps(body).encode()))


async def test_a_body_that_is_not_sns_or_ses_is_malformed(sns: SnsServer, webhooks: Webhooks) -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        await webhooks.receive("ses", request(b"Type=Notification"))
    with pytest.raises(PayloadError, match="not an SNS message"):
        await webhooks.receive("ses", request(json.dumps({"Type": "Notification", "Message": "x"}).encode()))
    signed = sns.sign(
        sns.notification({"eventType": "Bounce", "mail": {}, "bounce": {"bounceType": "Permanent"}})
    )
    with pytest.raises(PayloadError, match=r"not an SES event \(bounce.bouncedRecipients"):
        await webhooks.receive("ses", request(signed))


def test_tracking_headers_tag_the_message_and_name_the_configuration_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tracking_headers("ses", NOTIFICATION_ID, WebhookSettings()) == {
        "X-SES-MESSAGE-TAGS": f"notification_id={NOTIFICATION_ID}"
    }
    monkeypatch.setenv("WEBHOOK_SES_CONFIGURATION_SET", "notifications")
    assert (
        tracking_headers("ses", NOTIFICATION_ID, WebhookSettings())["X-SES-CONFIGURATION-SET"]
        == "notifications"
    )
