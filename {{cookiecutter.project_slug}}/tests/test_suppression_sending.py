"""Sending honours the suppression list, and an address the server refuses as unknown joins it (real SMTP server)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import auth, service
from .smtp_server import SmtpServer
from .test_outbox import wait_for_status


def send(client: TestClient, *to: str) -> str:
    response = client.post(
        "/notifications", json={"to": list(to), "subject": "Hello", "body": "Hi"}, headers=auth()
    )
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


def recipients(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["address"]: entry for entry in answer["recipients"]}


def test_a_suppressed_recipient_is_skipped_and_shown_as_suppressed(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch) as client:
        listed = client.post("/suppressions", json={"address": "Bob@example.org"}, headers=auth())
        assert listed.status_code == 201
        both = wait_for_status(client, send(client, "alice@example.com", "bob@example.org"), "sent")
        assert [message.recipients for message in smtp_server.received] == [("alice@example.com",)]
        states = recipients(both)
        assert states["alice@example.com"]["state"] == "sent"
        assert states["alice@example.com"]["events"][0]["diagnostic"].startswith("250")
        bob = states["bob@example.org"]
        assert bob["state"] == "suppressed"
        assert [event["type"] for event in bob["events"]] == ["suppressed"]
        assert "manual" in bob["events"][0]["diagnostic"]

        only_bob = wait_for_status(client, send(client, "BOB@example.org"), "suppressed")
        assert only_bob["finished_at"] is not None
        assert only_bob["pending"] == []
        assert recipients(only_bob)["BOB@example.org"]["state"] == "suppressed"
        assert len(smtp_server.received) == 1
        listed_suppressed = client.get("/notifications", params={"status": "suppressed"}, headers=auth())
        assert [item["id"] for item in listed_suppressed.json()["items"]] == [only_bob["id"]]


def test_a_550_5_1_1_at_rcpt_suppresses_the_address_and_the_next_notification_ends_suppressed(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.refused = {"ghost@example.com", "gone@example.com"}
    smtp_server.handler.rcpt_replies = {"policy@example.com": ["550 5.7.1 relaying denied"]}
    with service(monkeypatch) as client:
        mixed = wait_for_status(
            client, send(client, "ghost@example.com", "alice@example.com", "policy@example.com"), "sent"
        )
        states = recipients(mixed)
        ghost = states["ghost@example.com"]
        assert ghost["state"] == "bounced"
        assert ghost["events"][0] | {"at": None} == {
            "type": "bounced",
            "at": None,
            "source": "smtp",
            "bounce": "hard",
            "status": "5.1.1",
            "diagnostic": "550 5.1.1 unknown mailbox",
        }
        assert states["policy@example.com"]["state"] == "refused"
        entry = client.get("/suppressions", headers=auth()).json()["items"]
        assert [(item["address"], item["reason"]) for item in entry] == [("ghost@example.com", "hard_bounce")]
        assert entry[0]["event"]["notification_id"] == mixed["id"]
        assert entry[0]["event"]["status"] == "5.1.1"

        # every recipient refused: the notification fails, and the address is suppressed all the same
        alone = wait_for_status(client, send(client, "gone@example.com"), "failed")
        assert alone["refused"] == {"gone@example.com": "550 5.1.1 unknown mailbox"}
        assert recipients(alone)["gone@example.com"]["state"] == "bounced"

        received = len(smtp_server.received)
        for address in ("ghost@example.com", "gone@example.com"):
            wait_for_status(client, send(client, address), "suppressed")
        time.sleep(0.1)
        assert len(smtp_server.received) == received
        assert not client.get("/suppressions", params={"reason": "manual"}, headers=auth()).json()["items"]


def test_the_envelope_sender_is_a_verp_address_when_a_bounce_domain_is_set(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, BOUNCE_DOMAIN="bounces.example.com") as client:
        notification_id = send(client, "alice@example.com")
        wait_for_status(client, notification_id, "sent")
    (message,) = smtp_server.received
    assert message.mail_from == f"bounces+{notification_id}@bounces.example.com"
    assert message.message["From"].addresses[0].addr_spec == "noreply@example.com"
