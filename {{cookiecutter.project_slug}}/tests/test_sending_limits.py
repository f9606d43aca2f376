"""Sending within the limits, through the service and a real SMTP server: holds are not attempts."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from {{ cookiecutter.package_name }}.store import NotificationRecord, NotificationStore, open_engine, utcnow

from .conftest import auth, migrate, service
from .smtp_server import SmtpServer
from .test_metrics import scrape, value
from .test_outbox import wait_for_status


def wait_until_held(client: TestClient, notification_id: str, timeout: float = 15) -> dict[str, Any]:
    """Poll GET /notifications/{id} until a hold set its last error; return the answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = client.get(f"/notifications/{notification_id}", headers=auth()).json()
        if answer["last_error"] or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def one(index: int) -> dict[str, object]:
    return {
        "to": [f"user{index}@example.com"],
        "subject": f"Message {index}",
        "body": "Hello",
        "format": "text",
    }


@pytest.mark.parametrize(
    "reply",
    [
        "421 4.7.0 Try again later, closing connection.",
        "451 4.7.0 Temporary server error. Please try again later. PRX4",
    ],
)
def test_a_server_throttling_every_fifth_message_gets_them_all_without_one_failing(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, reply: str
) -> None:
    smtp_server.handler.every_nth = (5, reply)
    # One attempt each: a throttling reply that spent an attempt would fail its notification.
    with service(monkeypatch, DELIVERY_MAX_ATTEMPTS="1") as client:
        ids = [
            client.post("/notifications", json=one(index), headers=auth()).json()["id"] for index in range(8)
        ]
        done = [wait_for_status(client, each, "sent", "failed", timeout=60) for each in ids]

    assert [answer["status"] for answer in done] == ["sent"] * 8
    assert smtp_server.handler.data_commands > 8  # some were throttled, then sent again
    assert sorted(str(received.message["To"]) for received in smtp_server.received) == sorted(
        f"user{index}@example.com" for index in range(8)
    )


def test_a_quota_reply_holds_the_notification_queued_until_the_window_has_passed(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_replies.append(
        "550 5.4.5 Daily user sending limit exceeded. For more information"
    )
    with service(monkeypatch, MAIL_RATE_LIMIT="100/hour") as client:
        before = scrape(client)
        posted = utcnow()
        notification_id = client.post("/notifications", json=one(0), headers=auth()).json()["id"]
        answer = wait_until_held(client, notification_id)
        after = scrape(client)

    assert answer["status"] == "queued"
    assert answer["attempts"] == []
    assert "550 5.4.5" in answer["last_error"]
    earliest = datetime.fromisoformat(answer["next_attempt_at"])
    assert posted + timedelta(minutes=59) < earliest < utcnow() + timedelta(hours=1, minutes=1)
    assert smtp_server.received == []
    for name, labels in [
        ("notifications_held_total", {"reason": "quota"}),
        ("smtp_throttle_replies_total", {"server": "localhost", "kind": "quota"}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels) + 1, name
    assert value(after, "notifications_scheduled") == 1


def test_a_notification_held_by_the_rate_limit_is_sent_once_the_window_frees(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, MAIL_RATE_LIMIT="2/3second") as client:
        ids = [
            client.post("/notifications", json=one(index), headers=auth()).json()["id"] for index in range(5)
        ]
        smtp_server.handler.wait_for(2)
        waiting = [client.get(f"/notifications/{each}", headers=auth()).json() for each in ids]
        done = [wait_for_status(client, each, "sent", timeout=20) for each in ids]

    assert sum(answer["status"] == "queued" for answer in waiting) >= 2, waiting
    assert all(answer["attempts"] == [] for answer in waiting if answer["status"] == "queued")
    assert all(len(answer["attempts"]) == 1 for answer in done)
    times = sorted(smtp_server.handler.arrived)
    assert len(times) == 5
    # Admitted 3 s apart at least; they reach the server a little later each, not always equally late.
    gaps = [later - earlier for earlier, later in zip(times, times[2:], strict=False)]
    assert min(gaps) >= 3 - 1, gaps


def test_a_notification_held_back_for_longer_than_delivery_max_hold_fails_saying_so(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(database_url)

    async def held_for_four_days() -> None:
        store = NotificationStore(open_engine(database_url))
        try:
            await store.for_client("default").add("held" + "0" * 28, one(0), ["user0@example.com"])
            async with store.engine.begin() as connection:
                await connection.execute(
                    update(NotificationRecord).values(held_since=utcnow() - timedelta(days=4))
                )
        finally:
            await store.aclose()

    asyncio.run(held_for_four_days())
    with service(monkeypatch) as client:
        failed = wait_for_status(client, "held" + "0" * 28, "failed", "sent")

    assert failed["status"] == "failed"
    assert "DELIVERY_MAX_HOLD (259200 s)" in failed["last_error"]
    assert smtp_server.received == []
