"""One-click unsubscribe (RFC 8058): bulk mail carries List-Unsubscribe; its POST suppresses the address."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from {{ cookiecutter.package_name }}.notifications.unsubscribe import InvalidTokenError, UnsubscribeTokens

from .conftest import auth, service
from .smtp_server import SmtpServer

SECRET = "unsubscribe-secret-0123456789-abcdefghij"
BULK = {"to": ["Ada@Example.com"], "subject": "This week", "body": "News", "bulk": True}


@pytest.fixture
def bulk_client(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    env = {
        "MAIL_UNSUBSCRIBE_URL": "https://mail.example.com",
        "MAIL_UNSUBSCRIBE_SECRET": SECRET,
        "MAIL_UNSUBSCRIBE_MAILTO": "unsubscribe@example.com",
    }
    with service(monkeypatch, **env) as client:
        yield client


def suppressed(client: TestClient) -> list[dict[str, object]]:
    items: list[dict[str, object]] = client.get("/suppressions", headers=auth()).json()["items"]
    return items


def test_bulk_mail_carries_one_click_unsubscribe_that_suppresses_once(
    bulk_client: TestClient, smtp_server: SmtpServer
) -> None:
    assert bulk_client.post("/notifications", json=BULK, headers=auth()).status_code == 202
    [received] = smtp_server.handler.wait_for(1)
    header = received.message["List-Unsubscribe"]
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://mail\.example\.com/unsubscribe/[^>]+)>", header)
    assert url is not None
    assert "<mailto:unsubscribe@example.com?subject=unsubscribe>" in header
    path = url.group(1).removeprefix("https://mail.example.com")
    assert path in received.message.get_body(preferencelist=("html",)).get_content()

    page = bulk_client.get(path)
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert suppressed(bulk_client) == []  # a GET (a link scanner) changes nothing

    form = {"List-Unsubscribe": "One-Click"}
    assert bulk_client.post(path, data=form).status_code == 200
    assert bulk_client.post(path, data=form).status_code == 200  # idempotent
    [entry] = suppressed(bulk_client)
    assert entry["address"] == "ada@example.com"
    assert entry["reason"] == "unsubscribe"


def test_a_tampered_or_expired_token_changes_nothing_and_says_so(bulk_client: TestClient) -> None:
    tokens = UnsubscribeTokens(SecretStr(SECRET), 3600)
    good = tokens.issue("ada@example.com", "n1")
    payload, _, mac = good.partition(".")
    forged = UnsubscribeTokens(SecretStr("another-secret-0123456789-abcdefghijkl"), 3600).issue(
        "ada@example.com", "n1"
    )
    for token in (f"{payload}x.{mac}", forged, f"{payload}.{mac[:-2]}", "garbage"):
        answer = bulk_client.post(f"/unsubscribe/{token}")
        assert answer.status_code == 400
        assert "Nothing was changed" in answer.text
    expired = tokens.issue("ada@example.com", "n1", now=0)
    answer = bulk_client.post(f"/unsubscribe/{expired}")
    assert answer.status_code == 400
    assert "expired" in answer.text
    assert suppressed(bulk_client) == []
    with pytest.raises(InvalidTokenError):
        tokens.verify(expired)


def test_bulk_mail_needs_one_recipient_and_an_unsubscribe_address(
    client: TestClient, bulk_client: TestClient
) -> None:
    answer = client.post("/notifications", json=BULK, headers=auth())
    assert answer.status_code == 422
    assert "MAIL_UNSUBSCRIBE_URL" in answer.text
    two = {**BULK, "to": ["a@example.com", "b@example.com"]}
    assert bulk_client.post("/notifications", json=two, headers=auth()).status_code == 422
    assert client.get("/notifications", headers=auth()).json()["items"] == []
