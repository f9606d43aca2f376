"""Open relay risk: duplicate recipients and domains outside ALLOWED_RECIPIENT_DOMAINS are refused and logged."""

from __future__ import annotations

import logging

import pytest

from {{ cookiecutter.package_name }}.mail import SettingsError
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import API_KEY, auth, service
from .smtp_server import SmtpServer

BODY = "confidential body text"


def notification(to: list[str], cc: list[str] | None = None) -> dict[str, object]:
    return {"to": to, "cc": cc or [], "subject": "Hello", "body": BODY, "format": "text"}


@pytest.mark.parametrize(
    ("to", "cc", "location"),
    [
        (["alice@example.com", "alice@example.com"], [], ["body", "to", 1]),
        (["alice@example.com"], ["ALICE@Example.COM"], ["body", "cc", 0]),
    ],
    ids=["twice-in-to", "to-and-cc-other-case"],
)
def test_duplicate_recipients_are_refused_and_logged(
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    to: list[str],
    cc: list[str],
    location: list[object],
) -> None:
    caplog.set_level(logging.WARNING)
    with service(monkeypatch) as client:
        response = client.post("/notifications", json=notification(to, cc), headers=auth())

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "duplicate_recipient"
    assert error["loc"] == location
    assert "notification refused" in caplog.text
    assert BODY not in caplog.text
    assert smtp_server.received == []


def test_only_allowed_domains_and_their_subdomains_are_accepted(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with service(monkeypatch, ALLOWED_RECIPIENT_DOMAINS="Example.com, partner.org") as client:
        allowed = notification(["a@example.com", "b@mail.example.com"], ["c@partner.org"])
        assert client.post("/notifications", json=allowed, headers=auth()).status_code == 202
        [received] = smtp_server.handler.wait_for(1)
        assert sorted(received.recipients) == ["a@example.com", "b@mail.example.com", "c@partner.org"]

        refused = notification(["a@example.com", "x@evil.org"], ["y@notexample.com"])
        response = client.post("/notifications", json=refused, headers=auth())

    assert response.status_code == 422
    assert [(error["type"], error["loc"]) for error in response.json()["detail"]] == [
        ("recipient_domain_not_allowed", ["body", "to", 1]),
        ("recipient_domain_not_allowed", ["body", "cc", 0]),
    ]
    assert "evil.org is not in ALLOWED_RECIPIENT_DOMAINS" in caplog.text
    assert BODY not in caplog.text
    assert len(smtp_server.received) == 1


@pytest.mark.parametrize("value", ["@example.com", "*.example.com", "alice@example.com", "localhost"])
def test_allowed_domains_must_be_bare_domains(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("API_KEYS", API_KEY)
    monkeypatch.setenv("ALLOWED_RECIPIENT_DOMAINS", value)

    with pytest.raises(SettingsError, match="ALLOWED_RECIPIENT_DOMAINS: list bare domains"):
        Settings.from_env()
