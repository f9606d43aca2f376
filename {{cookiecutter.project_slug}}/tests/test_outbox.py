"""The durable outbox through real parts: the service, a real SMTP server, SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.cli import main as cli_main
from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.store import open_engine, upgrade
from {{ cookiecutter.package_name }}.store.models import Base

from .conftest import API_KEY, auth, service
from .service_process import ServiceProcess
from .smtp_server import PASSWORD, SmtpServer, running_server

NOTIFICATION = {"to": ["alice@example.com", "bob@example.org"], "subject": "Report", "body": "Hello"}


def wait_for_status(
    client: TestClient | httpx.Client,
    notification_id: str,
    *wanted: str,
    timeout: float = 15,
    key: str = API_KEY,
) -> dict[str, Any]:
    """Poll GET /notifications/{id} (as the client of `key`) until its status is one of `wanted`; return the answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = client.get(f"/notifications/{notification_id}", headers=auth(key)).json()
        if answer["status"] in wanted:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"still {answer['status']} after {timeout} s, not {wanted}: {answer}")
        time.sleep(0.02)


def test_migrations_create_exactly_the_models(database_url: str) -> None:
    async def differences() -> list[Any]:
        engine = open_engine(database_url)
        try:
            await upgrade(engine)
            await upgrade(engine)  # safe to run twice
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []


def test_migrate_command_creates_then_reports_the_store(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["migrate"]) == 0
    assert cli_main(["migrate"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == "notification store at revision 0007 (was empty)"
    assert second == "notification store at revision 0007"


def test_start_up_refuses_a_store_behind_the_code_in_one_line(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    service = ServiceProcess(tmp_path / "service.log")
    with pytest.raises(AssertionError, match="the service exited"):
        service.start()

    assert service.process is not None
    assert service.process.returncode == 2
    [line] = (tmp_path / "service.log").read_text().strip().splitlines()
    assert line.startswith("error: the notification store (")
    assert line.endswith(
        "is empty, this code needs revision 0007: run `python -m {{ cookiecutter.package_name }} migrate` (make migrate)"
    )


def test_sent_notification_can_be_looked_up_with_its_replies(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        answer = wait_for_status(client, notification_id, "sent")
        assert client.get(f"/notifications/{notification_id}").status_code == 401
        assert client.get("/notifications/0123456789abcdef", headers=auth()).status_code == 404

    [received] = smtp_server.handler.wait_for(1)
    assert received.message.get_all("Message-ID") == [f"<{notification_id}@example.com>"]
    assert sorted(answer["accepted"]) == NOTIFICATION["to"]
    assert answer["refused"] == {}
    [attempt] = answer["attempts"]
    assert attempt["reply"] == "250 Message accepted for delivery"  # the server's reply, not prefixed again
    assert answer["last_error"] is None
    assert answer["next_attempt_at"] is None


def test_transient_reply_is_retried_from_the_store_with_the_same_message_id(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_replies.append("451 4.3.0 try again later")
    with service(monkeypatch, MAIL_MAX_RETRIES="0", DELIVERY_RETRY_BACKOFF="0.5") as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        retrying = wait_for_status(client, notification_id, "retrying")
        sent = wait_for_status(client, notification_id, "sent")

    assert "451 4.3.0 try again later" in retrying["last_error"]
    assert retrying["next_attempt_at"] is not None
    first, second = sent["attempts"]
    assert "451 4.3.0 try again later" in first["reply"]
    assert second["reply"].startswith("250 ")
    [received] = smtp_server.received
    assert received.message["Message-ID"] == f"<{notification_id}@example.com>"


def test_a_send_slower_than_the_lease_keeps_its_claim_and_goes_out_once(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.delay = 5  # the end of DATA is answered after two and a half leases
    with service(monkeypatch, DELIVERY_LEASE="2", DELIVERY_POLL_INTERVAL="0.1") as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        sent = wait_for_status(client, notification_id, "sent")
        time.sleep(2.5)  # a lapsed lease would be claimed again by now

    assert len(sent["attempts"]) == 1
    assert len(smtp_server.received) == 1


def test_permanent_reply_fails_once_with_the_reply_recorded(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_replies.append("550 5.7.1 message rejected as spam")
    with service(monkeypatch, DELIVERY_RETRY_BACKOFF="0.1", DELIVERY_POLL_INTERVAL="0.1") as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        failed = wait_for_status(client, notification_id, "failed")
        time.sleep(0.5)  # several poll intervals: nothing is retried
        again = client.get(f"/notifications/{notification_id}", headers=auth()).json()
        failed_page = client.get("/notifications", params={"status": "failed"}, headers=auth()).json()

    assert "550 5.7.1 message rejected as spam" in failed["last_error"]
    assert PASSWORD not in failed["last_error"]
    [attempt] = again["attempts"]
    assert "550 5.7.1" in attempt["reply"]
    assert [item["id"] for item in failed_page["items"]] == [notification_id]
    assert smtp_server.received == []


def test_failed_notification_can_be_retried_by_an_operator(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_replies.append("554 5.0.0 transaction failed")
    with service(monkeypatch) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        wait_for_status(client, notification_id, "failed")
        assert client.post(f"/notifications/{notification_id}/retry", headers=auth()).status_code == 202
        sent = wait_for_status(client, notification_id, "sent")
        assert client.post(f"/notifications/{notification_id}/retry", headers=auth()).status_code == 409
        assert client.post("/notifications/unknown/retry", headers=auth()).status_code == 404

    assert len(sent["attempts"]) == 2
    assert len(smtp_server.handler.wait_for(1)) == 1


def test_recipient_deferred_with_4xx_is_retried_alone(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.rcpt_replies["bob@example.org"] = ["452 4.5.3 too many recipients"]
    with service(monkeypatch, DELIVERY_RETRY_BACKOFF="0.2") as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        retrying = wait_for_status(client, notification_id, "retrying")
        sent = wait_for_status(client, notification_id, "sent")

    assert retrying["accepted"] == ["alice@example.com"]
    assert retrying["refused"] == {"bob@example.org": "452 4.5.3 too many recipients"}
    assert retrying["pending"] == ["bob@example.org"]
    first, second = smtp_server.handler.wait_for(2)
    assert list(first.recipients) == ["alice@example.com"]
    assert list(second.recipients) == ["bob@example.org"]
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert sorted(sent["accepted"]) == NOTIFICATION["to"]
    assert sent["refused"] == {}


def test_same_idempotency_key_and_body_answer_the_first_id_and_send_once(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**auth(), "Idempotency-Key": "order-42-shipped"}
    with service(monkeypatch) as client:

        def post(_: int) -> httpx.Response:
            response: httpx.Response = client.post("/notifications", json=NOTIFICATION, headers=headers)
            return response

        with ThreadPoolExecutor(20) as pool:  # 20 requests at once on the app's event loop
            answers = list(pool.map(post, range(20)))
        other = client.post("/notifications", json={**NOTIFICATION, "subject": "Other"}, headers=headers)
        [notification_id] = {answer.json()["id"] for answer in answers}
        wait_for_status(client, notification_id, "sent")
        time.sleep(0.3)

    assert {answer.status_code for answer in answers} == {202}
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert [received.message["X-Notification-ID"] for received in smtp_server.received] == [notification_id]


def test_notifications_accepted_while_the_server_is_down_go_out_when_it_is_back(
    database_url: str,
    smtp_server: SmtpServer,
    ca: trustme.CA,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on MAIL_PORT for 8 s, far longer than the mailer's own retries: every attempt
    # fails and is rescheduled in the store.
    port = free_port()
    backoff = {"DELIVERY_RETRY_BACKOFF": "0.5", "DELIVERY_RETRY_BACKOFF_MAX": "1"}
    with service(monkeypatch, MAIL_PORT=str(port), **backoff) as client:
        ids = [
            client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"] for _ in range(5)
        ]
        time.sleep(8)
        down = [client.get(f"/notifications/{each}", headers=auth()).json() for each in ids]
        with running_server(ca, ca_file, port=port) as back:
            for each in ids:
                wait_for_status(client, each, "sent", timeout=20)
            arrived = sorted(received.message["X-Notification-ID"] for received in back.received)

    # A snapshot may catch one mid-attempt; none is sent or given up while the server is down.
    assert {answer["status"] for answer in down} <= {"retrying", "sending"}
    assert all(len(answer["attempts"]) >= 3 for answer in down)
    assert all("connect to localhost" in answer["last_error"] for answer in down)
    assert arrived == sorted(ids)


def test_retention_deletes_bodies_then_records_of_sent_notifications(
    database_url: str,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with service(monkeypatch) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        wait_for_status(client, notification_id, "sent")

        monkeypatch.setenv("BODY_RETENTION", "0")
        assert cli_main(["purge"]) == 0
        assert client.get(f"/notifications/{notification_id}", headers=auth()).json()["status"] == "sent"
        monkeypatch.setenv("ROW_RETENTION", "0")
        assert cli_main(["purge"]) == 0
        assert client.get(f"/notifications/{notification_id}", headers=auth()).status_code == 404

    assert capsys.readouterr().out.splitlines() == [
        "deleted 1 body(ies) of sent notifications and 0 record(s)",
        "deleted 0 body(ies) of sent notifications and 1 record(s)",
    ]


def test_bad_database_url_is_named_without_its_password(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:Db-Pa55word@db.internal/notifications")

    assert cli_main(["migrate"]) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: invalid settings: DATABASE_URL")
    assert "postgresql+asyncpg://" in line
    assert "Db-Pa55word" not in line
