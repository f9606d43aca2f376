"""In-process delivery survives a SIGKILL of the service (200 of 200 delivered after a restart on the same store),
and a stop while the server holds a message neither loses it nor sends it a third time."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.package_name }}.store import NotificationRecord, NotificationStore, Status, StoreSettings, open_engine

from .conftest import auth, migrate, service
from .service_process import ServiceProcess
from .smtp_server import SmtpServer
from .test_outbox import NOTIFICATION, wait_for_status

LEASE = "5"
"""DELIVERY_LEASE of both processes (s): short, so the test waits seconds for the dead one's claims, not a minute."""


def sending_now(database_url: str) -> int:
    """How many notifications are claimed (`sending`) in the store at `database_url`."""

    async def count() -> int:
        store = NotificationStore(open_engine(database_url))
        try:
            return (await store.backlog()).counts[Status.SENDING]
        finally:
            await store.aclose()

    return asyncio.run(count())


def stored(database_url: str, notification_id: str) -> NotificationRecord:
    """The record of `notification_id` in the store at `database_url`."""

    async def get() -> NotificationRecord | None:
        store = NotificationStore(open_engine(database_url))
        try:
            return await store.get(notification_id)
        finally:
            await store.aclose()

    record = asyncio.run(get())
    assert record is not None
    return record


def test_a_killed_service_loses_nothing_and_duplicates_at_most_its_sends_in_flight(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.delay = 0.2  # a slow server: 0.2 s per message
    migrate(database_url)
    log = tmp_path / "service.log"
    first = ServiceProcess(log, DELIVERY_LEASE=LEASE).start()
    with httpx.Client(base_url=first.url, headers=auth(), timeout=30) as client:
        ids = {client.post("/notifications", json=NOTIFICATION).json()["id"] for _ in range(200)}
    smtp_server.handler.wait_for(10, timeout=30)
    first.kill()
    in_flight = sending_now(database_url)
    delivered_before = len(smtp_server.received)

    # What the dead process held is claimed again once its DELIVERY_LEASE expired.
    with (
        ServiceProcess(log, DELIVERY_LEASE=LEASE) as second,
        httpx.Client(base_url=second.url, headers=auth()) as client,
    ):
        deadline = time.monotonic() + float(LEASE) + 40 + 30
        while {r.message["X-Notification-ID"] for r in smtp_server.received} != ids:
            assert time.monotonic() < deadline, f"{len(smtp_server.received)} of 200 arrived"
            time.sleep(0.5)
        statuses = {wait_for_status(client, each, "sent")["status"] for each in ids}

    arrived = [received.message["X-Notification-ID"] for received in smtp_server.received]
    duplicates = len(arrived) - len(set(arrived))
    assert len(ids) == 200
    assert delivered_before < 200
    assert statuses == {"sent"}
    assert duplicates <= in_flight


def test_a_stop_while_the_server_holds_a_message_waits_for_its_reply(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.delay = 1.5  # the server answers the end of DATA 1.5 s after it
    with service(monkeypatch, DELIVERY_SHUTDOWN_TIMEOUT="0.1") as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        smtp_server.handler.wait_held(1)

    record = stored(StoreSettings().database_url, notification_id)
    assert record.status == Status.SENT
    assert [attempt["outcome"] for attempt in record.attempts] == ["sent"]
    assert len(smtp_server.received) == 1
    assert "the server holds the message of 1 send(s); waiting for its reply" in caplog.text


@pytest.mark.parametrize(("retry", "status", "copies"), [("true", "sent", 1), ("false", "failed", 0)])
def test_a_process_ending_while_the_server_holds_a_message_leaves_an_unknown_outcome(
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    retry: str,
    status: str,
    copies: int,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    migrate(database_url)

    def process() -> ServiceProcess:
        return ServiceProcess(
            tmp_path / "service.log",
            DELIVERY_LEASE="2",
            DELIVERY_SHUTDOWN_TIMEOUT="0.1",
            DELIVERY_POLL_INTERVAL="0.2",
            DELIVERY_RETRY_UNKNOWN_OUTCOME=retry,
        )

    smtp_server.handler.delay = 60  # the server holds the message longer than the process lives
    first = process().start()
    with httpx.Client(base_url=first.url, headers=auth()) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION).json()["id"]
    smtp_server.handler.wait_held(1)
    assert first.process is not None
    first.process.terminate()  # SIGTERM: the dispatcher notes the held attempt, then waits for the reply
    deadline = time.monotonic() + 15
    while not stored(database_url, notification_id).attempts:
        assert time.monotonic() < deadline, "the held attempt was not noted in the store"
        time.sleep(0.1)
    first.kill()  # and the process ends before the reply came
    smtp_server.handler.delay = 0

    with (
        process() as second,
        httpx.Client(base_url=second.url, headers=auth()) as client,
    ):
        answer = wait_for_status(client, notification_id, status, timeout=30)

    assert [attempt["outcome"] for attempt in answer["attempts"]] == ["outcome_unknown", status]
    assert len(smtp_server.received) == copies


def test_a_killed_service_loses_no_notification_with_attachments(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.delay = 0.2
    migrate(database_url)
    report = bytes(range(256)) * 400  # 100 kB
    files = [
        {
            "filename": "report.pdf",
            "content_type": "application/pdf",
            "content": base64.b64encode(report).decode(),
        }
    ]
    first = ServiceProcess(tmp_path / "service.log", DELIVERY_LEASE=LEASE).start()
    with httpx.Client(base_url=first.url, headers=auth(), timeout=30) as client:
        ids = {
            client.post("/notifications", json={**NOTIFICATION, "attachments": files}).json()["id"]
            for _ in range(50)
        }
    smtp_server.handler.wait_for(3, timeout=30)
    first.kill()

    with ServiceProcess(tmp_path / "service.log", DELIVERY_LEASE=LEASE):
        deadline = time.monotonic() + float(LEASE) + 60
        while {r.message["X-Notification-ID"] for r in smtp_server.received} != ids:
            assert time.monotonic() < deadline, f"{len(smtp_server.received)} of 50 arrived"
            time.sleep(0.5)

    for received in smtp_server.received:
        [attachment] = received.message.iter_attachments()
        assert attachment.get_filename() == "report.pdf"
        assert attachment.get_content() == report
