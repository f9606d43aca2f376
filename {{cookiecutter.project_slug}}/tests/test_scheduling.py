"""Scheduling, priority and cancelling, through the service and the store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from {{ cookiecutter.package_name }}.store import NotificationStore, Priority, Status, open_engine, utcnow

from .conftest import auth, migrate, service
from .smtp_server import SmtpServer
from .test_clients import ALPHA_KEY, CLIENTS, not_found
from .test_outbox import wait_for_status

AHEAD = 20
"""Seconds ahead the scheduled notification is due."""
CONTENT = {"to": ["alice@example.com"], "subject": "Hi", "body": "Hello", "format": "text"}


def test_a_scheduled_notification_arrives_no_earlier_and_survives_a_restart(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_at = (utcnow() + timedelta(seconds=AHEAD)).replace(microsecond=0)
    with service(monkeypatch) as client:
        posted = client.post(
            "/notifications", json={**CONTENT, "send_at": send_at.isoformat()}, headers=auth()
        )
        notification_id = posted.json()["id"]
        waiting = client.get(f"/notifications/{notification_id}", headers=auth()).json()
        time.sleep(1.5)  # the dispatcher looked at least once
    assert smtp_server.received == []  # the service stopped before its time
    with service(monkeypatch) as client:
        sent = wait_for_status(client, notification_id, "sent", timeout=AHEAD + 15)

    assert posted.status_code == 202
    assert waiting["status"] == "queued"
    assert datetime.fromisoformat(waiting["next_attempt_at"]) == send_at
    assert len(smtp_server.received) == 1
    assert smtp_server.handler.arrived[0] >= send_at.timestamp()
    assert len(sent["attempts"]) == 1


def test_a_send_at_in_the_past_is_sent_now(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with service(monkeypatch) as client:
        posted = client.post(
            "/notifications", json={**CONTENT, "send_at": "2020-01-01T00:00:00+01:00"}, headers=auth()
        )
        wait_for_status(client, posted.json()["id"], "sent")


def test_a_notification_is_cancelled_before_it_goes_and_never_sent(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    with service(monkeypatch, **CLIENTS) as client:
        scheduled = client.post("/notifications", json={**CONTENT, "send_at": later}, headers=auth()).json()[
            "id"
        ]
        cancelled = client.delete(f"/notifications/{scheduled}", headers=auth())
        again = client.delete(f"/notifications/{scheduled}", headers=auth())
        sent = client.post("/notifications", json=CONTENT, headers=auth()).json()["id"]
        wait_for_status(client, sent, "sent")
        too_late = client.delete(f"/notifications/{sent}", headers=auth())
        others = client.delete(f"/notifications/{scheduled}", headers=auth(ALPHA_KEY))
        listed = client.get("/notifications?status=cancelled", headers=auth()).json()["items"]

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["next_attempt_at"] is None
    assert cancelled.json()["finished_at"] is not None
    assert again.status_code == 200
    assert too_late.status_code == 409
    assert too_late.json() == {"detail": f"notification {sent} is sent: too late to cancel"}
    assert (others.status_code, others.json()) == (404, not_found(scheduled))
    assert [item["id"] for item in listed] == [scheduled]
    assert len(smtp_server.received) == 1


def two_stores(database_url: str) -> tuple[NotificationStore, NotificationStore]:
    """Two stores on one database, as two processes have: neither's lock serialises the other's writes."""
    return NotificationStore(open_engine(database_url)), NotificationStore(open_engine(database_url))


def test_cancel_and_claim_racing_1000_times_one_wins_visibly_each_time(database_url: str) -> None:
    migrate(database_url)

    async def race() -> tuple[int, int]:
        sender, api = two_stores(database_url)
        wins = [0, 0]
        try:
            client = api.for_client("default")
            for index in range(1000):
                notification_id = f"race{index:028d}"
                await client.add(notification_id, CONTENT, ["alice@example.com"])
                claimed, cancelled = await asyncio.gather(
                    sender.claim(1, 60, notification_id), client.cancel(notification_id)
                )
                record = await api.get(notification_id)
                assert record is not None
                if claimed:
                    assert cancelled == Status.SENDING
                    assert record.status == Status.SENDING
                    wins[0] += 1
                else:
                    assert cancelled == Status.CANCELLED
                    assert record.status == Status.CANCELLED
                    wins[1] += 1
        finally:
            await sender.aclose()
            await api.aclose()
        return wins[0], wins[1]

    claims, cancels = asyncio.run(race())
    assert claims + cancels == 1000


def test_a_high_notification_behind_5000_due_low_ones_is_claimed_in_the_first_batch(
    database_url: str,
) -> None:
    migrate(database_url)

    async def claim_first_batch() -> list[str]:
        store = NotificationStore(open_engine(database_url))
        try:
            client = store.for_client("default")
            await asyncio.gather(
                *(
                    client.add(f"low{index:029d}", CONTENT, ["alice@example.com"], priority=Priority.LOW)
                    for index in range(5000)
                )
            )
            await client.add("normal" + "0" * 26, CONTENT, ["alice@example.com"])
            await client.add("high" + "0" * 28, CONTENT, ["alice@example.com"], priority=Priority.HIGH)
            return [record.id for record in await store.claim(64, 60)]
        finally:
            await store.aclose()

    batch = asyncio.run(claim_first_batch())
    assert len(batch) == 64
    assert batch[:2] == ["high" + "0" * 28, "normal" + "0" * 26]
    assert all(each.startswith("low") for each in batch[2:])
