"""POST /notifications end to end: HTTP in, a real STARTTLS + AUTH SMTP server out."""

from __future__ import annotations

import logging
import random
import re
import uuid

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.notifications import Composer, Notification, display_id
from {{ cookiecutter.package_name }}.notifications.settings import MessageSettings

{% if cookiecutter.delivery == "celery" -%}
from .celery_worker import TaskTracker
{% endif -%}
from .conftest import API_KEY, ROTATED_API_KEY, auth, service
from .smtp_server import PASSWORD, USERNAME, SmtpServer

NOTIFICATION = {
    "to": ["alice@example.com", "bob@example.org"],
    "subject": "Your report",
    "body": "Hello <b>Alice</b>",
}


def test_accepted_notification_arrives_over_tls_with_its_id(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    response = client.post("/notifications", json=NOTIFICATION, headers=auth())

    assert response.status_code == 202
    notification_id = response.json()["id"]
    assert response.json() == {"id": notification_id, "status": "queued"}
    [received] = smtp_server.handler.wait_for(1)
    message = received.message
    assert received.tls
    assert received.login == USERNAME
    assert received.mail_from == "noreply@example.com"
    assert sorted(received.recipients) == ["alice@example.com", "bob@example.org"]
    assert message["Subject"] == "Your report"
    assert message["From"] == "Test Sender <noreply@example.com>"
    assert message["X-Notification-ID"] == notification_id
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Hello <b>Alice</b>" in text  # plain text is never HTML-escaped
    containers = [part for part in message.walk() if part.is_multipart()]
    assert containers
    assert all("Content-Transfer-Encoding" not in part for part in containers)  # RFC 2045
    assert "Hello &lt;b&gt;Alice&lt;/b&gt;" in html  # HTML is escaped
    assert display_id(notification_id) in html
    assert display_id(notification_id) in text


BITCOIN_ID = re.compile(r"\b(?<!=)[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b")
"""SpamAssassin's __BITCOIN_ID body pattern, behind PDS_BTC_ID (pds/20_btc.cf)."""


def test_no_notification_id_reads_as_a_bitcoin_address() -> None:
    chance = random.Random(5)
    composer = Composer.load(
        MessageSettings(), service_name="Acme Notifications", sender="noreply@example.com"
    )
    lookalikes = [chance.choice("13") + "".join(chance.choices("123456789abcdef", k=31)) for _ in range(500)]
    assert all(BITCOIN_ID.search(f"notification {each}") for each in lookalikes)  # printed bare, each matches
    for notification_id in [*lookalikes, *(uuid.UUID(int=chance.getrandbits(128)).hex for _ in range(2000))]:
        notification = Notification.model_construct(
            id=notification_id, to=["alice@example.com"], subject="Report", body="Hello", format="html"
        )
        message = composer.compose(notification).message
        html = str(message.alternative_body)
        seen = re.sub(r"<[^>]*>", "", html)  # the text SpamAssassin renders from the HTML
        for body in (str(message.body), html, seen):
            assert BITCOIN_ID.search(body) is None, (notification_id, body)
        assert display_id(notification_id) in seen
        assert display_id(notification_id).replace("-", "") == notification_id


def test_text_format_sends_a_single_plain_part(client: TestClient, smtp_server: SmtpServer) -> None:
    response = client.post("/notifications", json={**NOTIFICATION, "format": "text"}, headers=auth())

    assert response.status_code == 202
    [received] = smtp_server.handler.wait_for(1)
    parts = [part.get_content_type() for part in received.message.walk() if not part.is_multipart()]
    assert parts == ["text/plain"]
    assert received.message.get_body().get_content().strip() == NOTIFICATION["body"]


def test_cc_and_reply_to_are_delivered(client: TestClient, smtp_server: SmtpServer) -> None:
    body = {
        **NOTIFICATION,
        "to": ["alice@example.com"],
        "cc": ["carol@example.com"],
        "reply_to": "help@example.com",
    }
    assert client.post("/notifications", json=body, headers=auth()).status_code == 202

    [received] = smtp_server.handler.wait_for(1)
    assert sorted(received.recipients) == ["alice@example.com", "carol@example.com"]
    assert received.message["Cc"] == "carol@example.com"
    assert received.message["Reply-To"] == "help@example.com"


def test_every_configured_key_is_accepted_for_rotation(client: TestClient, smtp_server: SmtpServer) -> None:
    assert client.post("/notifications", json=NOTIFICATION, headers=auth(API_KEY)).status_code == 202
    assert client.post("/notifications", json=NOTIFICATION, headers=auth(ROTATED_API_KEY)).status_code == 202
    assert len(smtp_server.handler.wait_for(2)) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("wrong-key-0123456789"),
        auth(API_KEY[:-1]),
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": API_KEY},
    ],
    ids=["missing", "wrong", "prefix", "basic-scheme", "no-scheme"],
)
def test_requests_without_a_valid_key_get_401_and_send_nothing(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    with service(monkeypatch) as client:
        response = client.post("/notifications", json=NOTIFICATION, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert API_KEY not in response.text
    assert smtp_server.received == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": ["not-an-address"]}, "to"),
        ({"to": []}, "to"),
        ({"cc": ["bad@"]}, "cc"),
        ({"subject": "Hello\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hello\nX-Injected: 1"}, "subject"),
        ({"subject": ""}, "subject"),
        ({"body": ""}, "body"),
        ({"to": [f"user{i}@example.com" for i in range(51)]}, "to"),
        ({"body": "x" * (100 * 1024 + 1)}, "body"),
        ({"importance": "high"}, "importance"),
        ({"priority": "urgent"}, "priority"),
        ({"send_at": "2030-01-01T09:00:00"}, "send_at"),
        ({"send_at": "2999-01-01T09:00:00Z"}, "send_at"),
        ({"format": "pdf"}, "format"),
    ],
    ids=[
        "bad-address",
        "no-recipient",
        "bad-cc",
        "crlf-subject",
        "lf-subject",
        "empty-subject",
        "empty-body",
        "51-recipients",
        "body-over-100KiB",
        "unknown-field",
        "unknown-priority",
        "send-at-without-offset",
        "send-at-beyond-the-horizon",
        "unknown-format",
    ],
)
def test_invalid_notifications_get_422_naming_the_field_and_send_nothing(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, change: dict[str, object], field: str
) -> None:
    with service(monkeypatch) as client:
        response = client.post("/notifications", json={**NOTIFICATION, **change}, headers=auth())
        assert response.status_code == 422
        assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}
    assert smtp_server.received == []  # the app has shut down: nothing was left to send


def test_limits_at_their_maximum_are_accepted(client: TestClient, smtp_server: SmtpServer) -> None:
    body = {**NOTIFICATION, "to": [f"user{i}@example.com" for i in range(50)], "body": "x" * (100 * 1024)}
    assert client.post("/notifications", json=body, headers=auth()).status_code == 202
    [received] = smtp_server.handler.wait_for(1)
    assert len(received.recipients) == 50


def test_limits_are_configurable(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with service(monkeypatch, MAX_RECIPIENTS="2", MAX_BODY_BYTES="10") as client:
        three = {**NOTIFICATION, "to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"]}
        assert client.post("/notifications", json=three, headers=auth()).status_code == 422
        assert (
            client.post("/notifications", json={**NOTIFICATION, "body": "x" * 11}, headers=auth()).status_code
            == 422
        )
        assert (
            client.post("/notifications", json={**NOTIFICATION, "body": "x" * 10}, headers=auth()).status_code
            == 202
        )


{% if cookiecutter.delivery == "celery" -%}
def test_every_accepted_notification_outlives_the_shutdown(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, celery_tasks: TaskTracker
) -> None:
    with service(monkeypatch) as client:
        ids = {
            client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"] for _ in range(20)
        }
    # The service has stopped; the broker still holds the notifications, and the worker sends each once.
    celery_tasks.wait_idle()
{%- else -%}
def test_shutdown_waits_for_every_accepted_notification(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch) as client:
        ids = {
            client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"] for _ in range(20)
        }
    # Leaving the block ran the shutdown: every notification is already there, none twice.
{%- endif %}
    assert sorted(received.message["X-Notification-ID"] for received in smtp_server.received) == sorted(ids)


def test_outcomes_are_logged_with_the_id_and_never_a_secret(
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
{%- if cookiecutter.delivery == "celery" %}
    celery_tasks: TaskTracker,
{%- endif %}
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_server.handler.refused.add("bob@example.org")
    with service(monkeypatch) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
{%- if cookiecutter.delivery == "celery" %}
    celery_tasks.wait_idle()
{%- endif %}

    logged = caplog.text
    assert f"notification {notification_id} queued" in logged
    assert f"notification {notification_id} refused for bob@example.org" in logged
    assert f"notification {notification_id} delivered to 1 recipient" in logged
    assert PASSWORD not in logged
    assert API_KEY not in logged
