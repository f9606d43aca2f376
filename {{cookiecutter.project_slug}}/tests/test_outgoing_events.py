"""Outgoing events reach the app's endpoint, signed per Standard Webhooks and verified there with the
standardwebhooks package; a receiver that is down loses nothing, a killed service sends an event at most
twice, with the same webhook-id."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import httpx
import pytest

from .conftest import auth, migrate, service
from .service_process import ServiceProcess
from .smtp_server import SmtpServer
from .test_feedback_bounces import add_notification
from .test_feedback_webhooks import MAILGUN_KEY, mailgun
from .test_outbox import wait_for_status
from .webhook_receiver import running_receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
FAST_RETRIES = {
    "EVENTS_RETRY_BACKOFF": "0.2",
    "EVENTS_RETRY_BACKOFF_MAX": "0.5",
    "EVENTS_WEBHOOK_TIMEOUT": "2",
}
NOTIFICATION_ID = "4b1d2c3e4f5a46b7c8d9e0f1a2b3c4d5"
NOTIFICATION = {"to": ["alice@example.com", "ghost@example.com"], "subject": "Hi", "body": "Hello"}


def test_status_changes_arrive_signed_and_survive_the_receiver_being_down(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.refused = {"ghost@example.com"}
    with running_receiver(SECRET, started=False) as receiver:
        env = {"EVENTS_WEBHOOK_URL": receiver.url, "EVENTS_WEBHOOK_SECRET": SECRET, **FAST_RETRIES}
        with service(monkeypatch, **env) as client:
            sent = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
            wait_for_status(client, sent, "sent")
            suppressed = client.post(
                "/notifications", json={**NOTIFICATION, "to": ["ghost@example.com"]}, headers=auth()
            ).json()["id"]
            wait_for_status(client, suppressed, "suppressed")
            time.sleep(3)  # the receiver is down: every delivery fails, and is rescheduled
            assert receiver.taken == []
            receiver.start()
            taken = receiver.wait_for(3)
            metrics = client.get("/metrics", headers=auth()).text

    assert receiver.refused == 0  # every request verified with standardwebhooks
    by_type = {payload["type"]: payload["data"] for _, payload in taken}
    assert sorted(by_type) == ["notification.sent", "notification.suppressed", "recipient.bounced"]
    assert by_type["notification.sent"]["notification_id"] == sent
    assert by_type["notification.sent"]["accepted"] == ["alice@example.com"]
    assert by_type["recipient.bounced"] | {"diagnostic": ""} == {
        "source": "smtp",
        "type": "bounced",
        "notification_id": sent,
        "status": "5.1.1",
        "diagnostic": "",
        "recipient": "ghost@example.com",
        "bounce": "hard",
        "client": "default",
    }
    assert by_type["notification.suppressed"]["suppressed"] == ["ghost@example.com"]
    assert len(receiver.ids()) == len(set(receiver.ids()))
    assert 'feedback_outgoing_event_deliveries_total{outcome="retried"}' in metrics


def test_a_killed_service_sends_an_event_again_at_most_once_with_the_same_id(
    smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event comes from a provider's report (handled by the service process in either delivery)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    migrate(database_url)
    add_notification(database_url, NOTIFICATION_ID, "a@example.com")
    with running_receiver(SECRET) as receiver:
        receiver.hold = 30  # takes the event, answers only after the service is gone

        def process() -> ServiceProcess:
            return ServiceProcess(
                tmp_path / "service.log",
                EVENTS_WEBHOOK_URL=receiver.url,
                EVENTS_WEBHOOK_SECRET=SECRET,
                EVENTS_WEBHOOK_TIMEOUT="1",
                EVENTS_RETRY_BACKOFF="0.2",
                WEBHOOK_MAILGUN_SIGNING_KEY=MAILGUN_KEY,
            )

        first = process().start()
        body, headers = mailgun(NOTIFICATION_ID, "a@example.com", data={"event": "delivered"})
        assert httpx.post(f"{first.url}/webhooks/mailgun", content=body, headers=headers).status_code == 200
        deadline = time.monotonic() + 20
        while not (
            delivered := [event for event in receiver.taken if event[1]["type"] == "recipient.delivered"]
        ):
            assert time.monotonic() < deadline, f"no delivered event: {receiver.taken}"
            time.sleep(0.05)
        [(held_id, held)] = delivered
        first.kill()  # after the POST, before its answer was recorded
        receiver.hold = 0
        with process():
            deadline = time.monotonic() + 30
            while receiver.ids().count(held_id) < 2:
                assert time.monotonic() < deadline, f"not sent again: {receiver.taken}"
                time.sleep(0.1)
            time.sleep(1.5)

    assert held["type"] == "recipient.delivered"
    assert held["data"]["notification_id"] == NOTIFICATION_ID
    assert receiver.ids().count(held_id) == 2  # once more, not a third time
    assert [payload for webhook_id, payload in receiver.taken if webhook_id == held_id] == [held, held]
    assert all(receiver.ids().count(webhook_id) <= 2 for webhook_id in receiver.ids())  # each at most twice
