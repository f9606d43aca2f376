"""The suppression list: the store's API on SQLite and PostgreSQL, and GET/POST/DELETE /suppressions."""

from __future__ import annotations

import asyncio

import pytest

from {{ cookiecutter.package_name }}.store import NotificationStore, Reason, open_engine

from .conftest import auth, migrate, service
from .smtp_server import SmtpServer


def test_the_store_keeps_addresses_case_insensitively_with_reason_event_and_date(database_url: str) -> None:
    migrate(database_url)

    async def scenario() -> None:
        store = NotificationStore(open_engine(database_url))
        suppressions = store.suppressions
        try:
            event = {"source": "smtp", "status": "5.1.1", "diagnostic": "550 5.1.1 no such user"}
            assert await suppressions.add_suppression(" Bob@Example.COM ", Reason.HARD_BOUNCE, event)
            assert not await suppressions.add_suppression("bob@example.com", "complaint")  # first reason kept
            assert await suppressions.is_suppressed("BOB@example.com")
            assert not await suppressions.is_suppressed("alice@example.com")
            entry = await suppressions.get("bob@EXAMPLE.com")
            assert entry is not None
            assert (entry.address, entry.reason, entry.event) == (
                "bob@example.com",
                Reason.HARD_BOUNCE,
                event,
            )
            assert entry.since.tzinfo is not None
            for index in range(5):
                await suppressions.add_suppression(f"user{index}@example.org", Reason.UNSUBSCRIBE)
            found = await suppressions.suppressed_among(["USER1@example.org", "nobody@example.org"])
            assert list(found) == ["user1@example.org"]
            first = await suppressions.page(Reason.UNSUBSCRIBE, limit=3)
            rest = await suppressions.page(Reason.UNSUBSCRIBE, after=first[-1].address, limit=3)
            assert [entry.address for entry in [*first, *rest]] == [f"user{i}@example.org" for i in range(5)]
            assert [entry.address for entry in await suppressions.page(Reason.HARD_BOUNCE)] == [
                "bob@example.com"
            ]
            assert await suppressions.count() == 6
            assert await suppressions.delete("Bob@example.com")
            assert not await suppressions.delete("bob@example.com")
            assert not await suppressions.is_suppressed("bob@example.com")
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_the_api_adds_lists_by_reason_pages_and_deletes(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch) as client:
        added = client.post("/suppressions", json={"address": "Carol@Example.com"}, headers=auth())
        assert added.status_code == 201, added.text
        assert added.json()["address"] == "carol@example.com"
        assert added.json()["reason"] == "manual"
        assert added.json()["event"]["source"] == "api"
        again = client.post(
            "/suppressions", json={"address": "carol@example.com", "reason": "complaint"}, headers=auth()
        )
        assert (again.status_code, again.json()["reason"]) == (200, "manual")
        for address in ("a@example.org", "b@example.org", "c@example.org"):
            response = client.post(
                "/suppressions", json={"address": address, "reason": "hard_bounce"}, headers=auth()
            )
            assert response.status_code == 201
        page = client.get(
            "/suppressions", params={"reason": "hard_bounce", "limit": 2}, headers=auth()
        ).json()
        assert [item["address"] for item in page["items"]] == ["a@example.org", "b@example.org"]
        rest = client.get(
            "/suppressions", params={"reason": "hard_bounce", "after": page["next"]}, headers=auth()
        ).json()
        assert ([item["address"] for item in rest["items"]], rest["next"]) == (["c@example.org"], None)
        assert len(client.get("/suppressions", headers=auth()).json()["items"]) == 4

        assert client.delete("/suppressions/CAROL@example.com", headers=auth()).status_code == 204
        assert client.delete("/suppressions/carol@example.com", headers=auth()).status_code == 404
        bad = client.post("/suppressions", json={"address": "x", "reason": "manual"}, headers=auth())
        assert bad.status_code == 422
        wrong_reason = client.post(
            "/suppressions", json={"address": "x@example.com", "reason": "spam"}, headers=auth()
        )
        assert wrong_reason.status_code == 422


def test_the_api_needs_a_key(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with service(monkeypatch) as client:
        assert client.get("/suppressions").status_code == 401
        assert client.post("/suppressions", json={"address": "a@example.com"}).status_code == 401
        assert (
            client.delete("/suppressions/a@example.com", headers=auth("wrong-key-0123456789")).status_code
            == 401
        )
