"""Bounces for plain SMTP through the running service: real DSNs (Postfix's own, Exchange Online's) in a real
Dovecot mailbox suppress the addresses they report, matched by VERP or by the returned Message-ID."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.store import NotificationStore, StoreSettings, open_engine

from .bounce_samples import BOUNCE_DOMAIN, EXCHANGE_ID, POSTFIX_BOUNCE_ID, sample
from .conftest import auth, migrate, service
from .dovecot import DovecotServer
from .smtp_server import SmtpServer

NOTIFICATIONS = {
    POSTFIX_BOUNCE_ID: ["nobody@example.org", "full@example.net"],
    EXCHANGE_ID: ["gone@contoso.com"],
}


def add_notification(database_url: str, notification_id: str, *recipients: str) -> None:
    """A notification as the service stores it when it accepts one."""

    async def add() -> None:
        store = NotificationStore(open_engine(database_url))
        try:
            content = {
                "to": list(recipients),
                "cc": [],
                "subject": "Your order",
                "body": "Shipped",
                "format": "text",
            }
            await store.for_client("default").add(notification_id, content, list(recipients))
        finally:
            await store.aclose()

    asyncio.run(add())


def wait_for_suppressions(client: TestClient, count: int, timeout: float = 20) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items = client.get("/suppressions", headers=auth()).json()["items"]
        if len(items) >= count or time.monotonic() > deadline:
            return {item["address"]: item for item in items}
        time.sleep(0.1)


def test_dsns_in_the_bounce_mailbox_suppress_the_addresses_they_report(
    dovecot: DovecotServer, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox = dovecot.mailbox()
    dovecot.append(mailbox, sample("postfix-bounce"), sample("exchange-online-ndr"), sample("unrelated"))
    env = {**dovecot.env(mailbox), "BOUNCE_DOMAIN": BOUNCE_DOMAIN, "BOUNCE_POLL_INTERVAL": "0.2"}
    monkeypatch.setenv("MAIL_FROM", "noreply@example.com")
    migrate(StoreSettings().database_url)
    for notification_id, recipients in NOTIFICATIONS.items():
        add_notification(StoreSettings().database_url, notification_id, *recipients)
    with service(monkeypatch, **env) as client:
        found = wait_for_suppressions(client, 2)
        assert sorted(found) == ["gone@contoso.com", "nobody@example.org"]
        assert found["nobody@example.org"]["event"] | {"diagnostic": ""} == {
            "source": "bounce_mailbox",
            "type": "bounced",
            "notification_id": POSTFIX_BOUNCE_ID,
            "status": "5.1.1",
            "diagnostic": "",
        }
        assert found["gone@contoso.com"]["event"]["notification_id"] == EXCHANGE_ID  # by Message-ID
        history = client.get(f"/notifications/{POSTFIX_BOUNCE_ID}", headers=auth()).json()["recipients"]
        full = next(entry for entry in history if entry["address"] == "full@example.net")
        assert [
            (event["type"], event["bounce"]) for event in full["events"] if event["source"] != "smtp"
        ] == [("bounced", "soft")]  # mailbox full: one soft bounce of SUPPRESSION_SOFT_BOUNCES=3
    flags = dovecot.flags(mailbox)
    assert len(flags) == 3  # nothing deleted, the unrelated message kept
