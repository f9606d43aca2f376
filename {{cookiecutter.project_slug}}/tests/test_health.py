"""GET /health and GET /health/mail."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from fastapi.testclient import TestClient

from .conftest import service
from .oauth_servers import CLIENT_ID, CLIENT_SECRET, MAILBOX, running_oauth_smtp, running_token_endpoint
from .raw_servers import listening, smtp_script
from .smtp_server import PASSWORD, SmtpServer


def test_health_answers_while_the_process_is_up(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_mail_health_is_ok_when_tls_and_login_work(client: TestClient, smtp_server: SmtpServer) -> None:
    response = client.get("/health/mail")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert smtp_server.received == []


def test_mail_health_is_503_with_the_reason_and_no_secret(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng-" + PASSWORD[::-1]
    with service(monkeypatch, MAIL_PASSWORD=wrong) as test_client:
        response = test_client.get("/health/mail")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["problem"] == "auth_failed"
    assert "535" in body["reason"]
    assert wrong not in response.text
    assert PASSWORD not in response.text


def test_mail_health_probes_at_most_once_per_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    with listening(smtp_script("220 x\r\n", "250 x\r\n", "221 bye\r\n")) as listener:
        env = {
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(listener.port),
            "MAIL_STARTTLS": "false",
            "MAIL_SSL_TLS": "false",
            "MAIL_USE_CREDENTIALS": "false",
            "MAIL_FROM": "noreply@example.com",
        }
        with service(monkeypatch, **env) as test_client:
            statuses = [test_client.get("/health/mail").status_code for _ in range(5)]
        assert statuses == [200] * 5
        assert listener.connections == 1


def test_mail_health_signs_in_with_xoauth2(
    ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_token_endpoint() as endpoint, running_oauth_smtp(ca, ca_file, endpoint) as (server, handler):
        env = server.env() | {
            "MAIL_AUTH": "xoauth2",
            "MAIL_USERNAME": MAILBOX,
            "MAIL_PASSWORD": "",
            "MAIL_OAUTH_PROVIDER": "generic",
            "MAIL_OAUTH_TOKEN_URL": endpoint.token_url,
            "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
            "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        }
        with service(monkeypatch, **env) as test_client:
            ok = test_client.get("/health/mail")
            endpoint.revoke_tokens()
            handler.refuse = True
        with service(monkeypatch, **env) as test_client:
            refused = test_client.get("/health/mail")
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
    assert refused.status_code == 503
    assert refused.json()["problem"] == "oauth_token_refused"
    assert CLIENT_SECRET not in refused.text
