"""GET /health and GET /health/mail."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.health import ProbeCache

from .conftest import auth, service
from .oauth_servers import CLIENT_ID, CLIENT_SECRET, MAILBOX, running_oauth_smtp, running_token_endpoint
from .raw_servers import ACCEPTING, listening, smtp_script
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


def test_mail_health_is_503_with_the_reason_for_a_valid_key_and_no_secret(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng-" + PASSWORD[::-1]
    with service(monkeypatch, MAIL_PASSWORD=wrong) as test_client:
        response = test_client.get("/health/mail", headers=auth())
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["problem"] == "auth_failed"
    assert "535" in body["reason"]
    assert wrong not in response.text
    assert PASSWORD not in response.text


@pytest.mark.parametrize("headers", [{}, auth("not-a-valid-key-0123456789")], ids=["no-key", "wrong-key"])
def test_mail_health_without_a_valid_key_says_only_status_and_problem(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    with service(monkeypatch, MAIL_PASSWORD="Wr0ng-" + PASSWORD[::-1]) as test_client:
        response = test_client.get("/health/mail", headers=headers)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "problem": "auth_failed"}
    for detail in ("localhost", str(smtp_server.port), "mailer", "535"):
        assert detail not in response.text


def test_mail_probe_cache_is_created_by_the_lifespan(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch) as test_client:
        app = test_client.app
        assert isinstance(app.state.mail_probe, ProbeCache)  # type: ignore[attr-defined]
        cache = app.state.mail_probe  # type: ignore[attr-defined]
        assert test_client.get("/health/mail").status_code == 200
        assert app.state.mail_probe is cache  # type: ignore[attr-defined]


def test_mail_health_probes_at_most_once_per_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    with listening(smtp_script(*ACCEPTING, "221 bye\r\n")) as listener:
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


def test_a_refused_login_is_not_probed_again_during_the_cool_down(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(
        monkeypatch, MAIL_PASSWORD="Wr0ng-" + PASSWORD[::-1], MAIL_LOGIN_COOLDOWN="60"
    ) as test_client:
        app = test_client.app
        app.state.mail_probe.ttl = 0  # type: ignore[attr-defined]
        statuses = [test_client.get("/health/mail").status_code for _ in range(4)]
    assert statuses == [503] * 4
    assert len(smtp_server.handler.logins) == 1


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
