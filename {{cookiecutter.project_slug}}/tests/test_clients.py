"""API keys are clients: each sees, lists and retries only its own notifications, and its Idempotency-Keys are its own."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic import command
from sqlalchemy import JSON, Connection, bindparam, text

from {{ cookiecutter.package_name }}.store import open_engine, utcnow
from {{ cookiecutter.package_name }}.store.models import UtcDateTime
from {{ cookiecutter.package_name }}.store.schema import alembic_config

from .conftest import API_KEY, auth, service
from .smtp_server import SmtpServer
from .test_outbox import NOTIFICATION, wait_for_status

ALPHA_KEY = "alpha-key-7Hq2xW9pLm4Rt8Zc"
BETA_KEY = "beta-key-Jd83KsPq02LxVn5e"
BETA_ROTATED_KEY = "beta-rotated-Wf61BnQz7Yc4Ku"
CLIENTS = {"API_KEYS": f"alpha:{ALPHA_KEY},beta:{BETA_KEY},beta:{BETA_ROTATED_KEY},{API_KEY}"}
"""Three clients: alpha, beta (two keys, as while rotating) and default (the unnamed key)."""


def not_found(notification_id: str) -> dict[str, str]:
    return {"detail": f"no notification {notification_id}"}


def test_a_client_sees_lists_and_retries_only_its_own_notifications(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_replies.append("554 5.0.0 transaction failed")
    with service(monkeypatch, **CLIENTS) as client:
        alpha = client.post("/notifications", json=NOTIFICATION, headers=auth(ALPHA_KEY)).json()["id"]
        wait_for_status(client, alpha, "failed", key=ALPHA_KEY)
        beta = client.post("/notifications", json=NOTIFICATION, headers=auth(BETA_KEY)).json()["id"]
        wait_for_status(client, beta, "sent", key=BETA_ROTATED_KEY)  # either key of beta's
        unknown = uuid.uuid4().hex

        for key in (BETA_KEY, API_KEY):
            other = client.get(f"/notifications/{alpha}", headers=auth(key))
            assert (other.status_code, other.json()) == (404, not_found(alpha))
            retried = client.post(f"/notifications/{alpha}/retry", headers=auth(key))
            assert (retried.status_code, retried.json()) == (404, not_found(alpha))
        missing = client.get(f"/notifications/{unknown}", headers=auth(BETA_KEY))
        assert (missing.status_code, missing.json()) == (404, not_found(unknown))

        def listed(key: str, **query: str) -> list[str]:
            page = client.get("/notifications", params=query, headers=auth(key)).json()
            return [item["id"] for item in page["items"]]

        assert listed(ALPHA_KEY) == [alpha]
        assert listed(BETA_KEY) == listed(BETA_ROTATED_KEY) == [beta]
        assert listed(BETA_KEY, status="failed") == []
        assert listed(API_KEY) == []
        assert client.post(f"/notifications/{alpha}/retry", headers=auth(ALPHA_KEY)).status_code == 202
        wait_for_status(client, alpha, "sent", key=ALPHA_KEY)


def test_idempotency_keys_are_per_client(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    repeat = {"Idempotency-Key": "order-42-shipped"}
    other_body = {**NOTIFICATION, "subject": "Another subject"}
    with service(monkeypatch, **CLIENTS) as client:
        alpha = client.post("/notifications", json=NOTIFICATION, headers={**auth(ALPHA_KEY), **repeat})
        beta = client.post("/notifications", json=NOTIFICATION, headers={**auth(BETA_KEY), **repeat})
        default = client.post("/notifications", json=other_body, headers={**auth(), **repeat})
        alpha_again = client.post("/notifications", json=NOTIFICATION, headers={**auth(ALPHA_KEY), **repeat})
        beta_again = client.post(
            "/notifications", json=NOTIFICATION, headers={**auth(BETA_ROTATED_KEY), **repeat}
        )
        beta_other = client.post("/notifications", json=other_body, headers={**auth(BETA_KEY), **repeat})
        for answer, key in ((alpha, ALPHA_KEY), (beta, BETA_KEY), (default, API_KEY)):
            wait_for_status(client, answer.json()["id"], "sent", key=key)
        ids = {alpha.json()["id"], beta.json()["id"], default.json()["id"]}

    assert [answer.status_code for answer in (alpha, beta, default, alpha_again, beta_again)] == [202] * 5
    assert len(ids) == 3  # one notification for each client
    assert alpha_again.json()["id"] == alpha.json()["id"]
    assert beta_again.json()["id"] == beta.json()["id"]
    assert beta_other.status_code == 422  # beta's own key, with another body
    assert sorted(
        received.message["X-Notification-ID"] for received in smtp_server.handler.wait_for(3)
    ) == sorted(ids)


def test_an_idempotent_repeat_answers_the_current_status(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**auth(), "Idempotency-Key": "status-repeat"}
    with service(monkeypatch) as client:
        first = client.post("/notifications", json=NOTIFICATION, headers=headers)
        notification_id = first.json()["id"]
        wait_for_status(client, notification_id, "sent")
        repeat = client.post("/notifications", json=NOTIFICATION, headers=headers)

    assert first.json() == {"id": notification_id, "status": "queued"}
    assert (repeat.status_code, repeat.json()) == (202, {"id": notification_id, "status": "sent"})


def test_notifications_stored_before_clients_existed_belong_to_the_default_client(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = uuid.uuid4().hex

    def at_revision_0002_with_one_row(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        row = text(
            "INSERT INTO notifications (id, status, pending, accepted, refused, attempts, attempt_count,"
            " idempotency_key, request_hash, created_at, finished_at) VALUES (:id, 'sent', :none, :accepted,"
            " :refused, :none, 1, 'legacy-key', 'legacy-hash', :now, :now)"
        ).bindparams(
            bindparam("none", type_=JSON),
            bindparam("accepted", type_=JSON),
            bindparam("refused", type_=JSON),
            bindparam("now", type_=UtcDateTime),
        )
        connection.execute(
            row, {"id": legacy, "none": [], "accepted": ["alice@example.com"], "refused": {}, "now": utcnow()}
        )

    async def prepare() -> None:
        engine = open_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(at_revision_0002_with_one_row)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    with service(monkeypatch, **CLIENTS) as client:  # service() migrates to the newest revision
        mine = client.get(f"/notifications/{legacy}", headers=auth())
        theirs = client.get(f"/notifications/{legacy}", headers=auth(ALPHA_KEY))
        same_key = client.post(
            "/notifications", json=NOTIFICATION, headers={**auth(ALPHA_KEY), "Idempotency-Key": "legacy-key"}
        )

    assert (mine.status_code, mine.json()["status"]) == (200, "sent")
    assert theirs.status_code == 404
    assert same_key.status_code == 202
    assert same_key.json()["id"] != legacy
