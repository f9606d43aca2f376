"""MAIL_AUTH=xoauth2 against a real token endpoint and an SMTP server that takes only its live tokens.

Every token source signs in the way the provider expects (client secret, certificate-signed
assertion, service account JWT, refresh token); the pool shares one token and renews it only
when it nears expiry; refused tokens, a down or slow endpoint and a wrong secret each end as
the right kind of failure and diagnosis, and no secret or token is ever printed or logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from fastapi_mail import MessageSchema, MessageType
from prometheus_client import REGISTRY

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.delivery.metrics import DeliveryMetrics
from {{ cookiecutter.package_name }}.devsmtp import free_port, server_tls_context
from {{ cookiecutter.package_name }}.mail import (
    Mailer,
    MailSettings,
    PermanentMailError,
    SettingsError,
    TransientMailError,
    load_settings,
)
from {{ cookiecutter.package_name }}.mail.doctor.diagnosis import Problem, render_diagnosis
from {{ cookiecutter.package_name }}.mail.doctor.probe import probe

from .oauth_servers import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    REFRESH_TOKEN,
    TENANT,
    TokenEndpoint,
    XOAuth2Handler,
    running_basic_auth_disabled_smtp,
    running_oauth_smtp,
    running_token_endpoint,
)
from .smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

SOURCES = (
    "microsoft_secret",
    "microsoft_certificate",
    "google_service_account",
    "google_refresh_token",
    "generic",
)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with running_token_endpoint() as running:
        yield running


@pytest.fixture
def oauth_smtp(
    ca: trustme.CA, ca_file: Path, endpoint: TokenEndpoint
) -> Iterator[tuple[SmtpServer, XOAuth2Handler]]:
    with running_oauth_smtp(ca, ca_file, endpoint) as running:
        yield running


def source_env(source: str, endpoint: TokenEndpoint, tmp_path: Path) -> dict[str, str]:
    """The MAIL_OAUTH_* variables of one token source, pointed at `endpoint`."""
    if source == "microsoft_secret":
        return {
            "MAIL_OAUTH_PROVIDER": "microsoft",
            "MAIL_OAUTH_TENANT_ID": TENANT,
            "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
            "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "MAIL_OAUTH_TOKEN_URL": endpoint.microsoft_url,
        }
    if source == "microsoft_certificate":
        return {
            "MAIL_OAUTH_PROVIDER": "microsoft",
            "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
            "MAIL_OAUTH_CERTIFICATE_FILE": str(endpoint.write_certificate(tmp_path / "app.pem")),
            "MAIL_OAUTH_TOKEN_URL": endpoint.microsoft_url,
        }
    if source == "google_service_account":
        return {
            "MAIL_OAUTH_PROVIDER": "google",
            "MAIL_OAUTH_SERVICE_ACCOUNT_FILE": str(endpoint.write_service_account(tmp_path / "sa.json")),
        }
    if source == "google_refresh_token":
        return {
            "MAIL_OAUTH_PROVIDER": "google",
            "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
            "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "MAIL_OAUTH_REFRESH_TOKEN": REFRESH_TOKEN,
            "MAIL_OAUTH_TOKEN_URL": endpoint.token_url,
        }
    return {  # the generic token source needs no MAIL_OAUTH_PROVIDER
        "MAIL_OAUTH_TOKEN_URL": endpoint.token_url,
        "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
        "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "MAIL_OAUTH_SCOPE": "smtp.send",
    }


def oauth_settings(server: SmtpServer, env: dict[str, str], **overrides: Any) -> MailSettings:
    values: dict[str, Any] = {
        name.removeprefix("MAIL_").lower(): value for name, value in server.env().items()
    }
    values.update({name.removeprefix("MAIL_").lower(): value for name, value in env.items()})
    values.update(auth="xoauth2", username=MAILBOX, password="", MAIL_FROM=MAILBOX)
    values.pop("from", None)
    values.update(overrides)
    return MailSettings(**values)


def message(number: int = 0) -> MessageSchema:
    return MessageSchema(
        subject=f"oauth {number}", recipients=["alice@example.com"], body="hi", subtype=MessageType.plain
    )


def leaked(text: str, endpoint: TokenEndpoint) -> list[str]:
    """The secrets and issued tokens that appear in `text`."""
    return [secret for secret in (CLIENT_SECRET, REFRESH_TOKEN, *endpoint.tokens()) if secret in text]


@pytest.mark.parametrize("source", SOURCES)
async def test_each_token_source_sends_and_passes_check_mail(
    source: str,
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, handler = oauth_smtp
    settings = oauth_settings(server, source_env(source, endpoint, tmp_path))
    caplog.set_level(logging.DEBUG)
    async with Mailer(settings) as mailer:
        result = await mailer.send(message())
    assert result.accepted == ("alice@example.com",)
    assert server.handler.wait_for(1)[0].message["Subject"] == "oauth 0"
    assert handler.oauth_logins == [MAILBOX]

    diagnosis = await probe(settings)
    assert diagnosis.problem is Problem.OK, render_diagnosis(diagnosis)
    assert handler.oauth_logins == [MAILBOX, MAILBOX]
    assert (
        leaked(caplog.text + repr(settings) + render_diagnosis(diagnosis, json_output=True), endpoint) == []
    )


async def test_the_pool_shares_one_token_and_renews_it_once_per_expiry(
    endpoint: TokenEndpoint, oauth_smtp: tuple[SmtpServer, XOAuth2Handler], tmp_path: Path
) -> None:
    server, handler = oauth_smtp
    endpoint.lifetime = 2.0  # renewed 0.5 s before it expires
    settings = oauth_settings(server, source_env("microsoft_secret", endpoint, tmp_path), pool_size=3)
    async with Mailer(settings) as mailer:
        results = await mailer.send_many(message(n) for n in range(30))
        assert all(not isinstance(result, Exception) for result in results)
        assert len(handler.oauth_logins) == 3  # three sessions logged in...
        assert len(endpoint.requests) == 1  # ...with one token

        await asyncio.sleep(1.6)  # past the renewal point: the next login needs a new token
        server.handler.drop_connections()
        results = await mailer.send_many(message(n) for n in range(30, 60))
        assert all(not isinstance(result, Exception) for result in results)
        assert len(endpoint.requests) == 2
        assert len(handler.oauth_logins) == 6

        results = await mailer.send_many(message(n) for n in range(60, 90))  # the warm pool needs no token
        assert all(not isinstance(result, Exception) for result in results)
    assert len(endpoint.requests) == 2
    assert len(server.handler.wait_for(90)) == 90


async def test_a_revoked_token_is_renewed_once_then_sending_goes_on(
    endpoint: TokenEndpoint, oauth_smtp: tuple[SmtpServer, XOAuth2Handler], tmp_path: Path
) -> None:
    server, _ = oauth_smtp
    settings = oauth_settings(server, source_env("google_refresh_token", endpoint, tmp_path))
    async with Mailer(settings) as mailer:
        await mailer.send(message(1))
        endpoint.revoke_tokens()
        server.handler.drop_connections()
        result = await mailer.send(message(2))
    assert result.attempts == 1  # the renewal is part of the login, not a retry
    assert len(endpoint.requests) == 2


async def test_token_requests_are_counted_in_the_metrics(
    endpoint: TokenEndpoint, oauth_smtp: tuple[SmtpServer, XOAuth2Handler], tmp_path: Path
) -> None:
    server, _ = oauth_smtp

    def requested(result: str) -> float:
        return REGISTRY.get_sample_value("smtp_oauth_token_requests_total", {"result": result}) or 0.0

    before = requested("ok"), requested("error")
    settings = oauth_settings(server, source_env("google_refresh_token", endpoint, tmp_path))
    async with Mailer(settings, DeliveryMetrics()) as mailer:
        await mailer.send(message(1))
        endpoint.revoke_tokens()
        server.handler.drop_connections()
        await mailer.send(message(2))  # the refused token is renewed
    wrong = {"MAIL_OAUTH_CLIENT_SECRET": "Wr0ng~secret-x"}
    refused = oauth_settings(server, source_env("microsoft_secret", endpoint, tmp_path) | wrong)
    async with Mailer(refused, DeliveryMetrics()) as mailer:
        with pytest.raises(PermanentMailError):
            await mailer.send(message(3))

    assert (requested("ok") - before[0], requested("error") - before[1]) == (2, 1)


async def test_a_token_the_server_keeps_refusing_is_a_permanent_error_after_one_renewal(
    endpoint: TokenEndpoint, oauth_smtp: tuple[SmtpServer, XOAuth2Handler], tmp_path: Path
) -> None:
    server, handler = oauth_smtp
    handler.refuse = True
    settings = oauth_settings(server, source_env("microsoft_secret", endpoint, tmp_path))
    async with Mailer(settings) as mailer:
        with pytest.raises(PermanentMailError) as raised:
            await mailer.send(message())
    assert len(endpoint.requests) == 2
    text = str(raised.value)
    assert "refused the OAuth2 token for MAIL_USERNAME=mailer@example.com: 535 5.7.3" in text
    assert "New-ServicePrincipal" in text
    assert "Set-CASMailbox" in text
    assert leaked(text, endpoint) == []

    diagnosis = await probe(settings)
    assert diagnosis.problem is Problem.OAUTH_TOKEN_REFUSED
    assert diagnosis.exit_code == 44
    assert leaked(render_diagnosis(diagnosis), endpoint) == []


@pytest.mark.parametrize(
    ("roles", "problem", "fix"),
    [
        ([], Problem.OAUTH_CONSENT_MISSING, "SMTP.SendAsApp, then Grant admin consent"),
        (["SMTP.SendAsApp"], Problem.OAUTH_TOKEN_REFUSED, "New-ServicePrincipal"),
    ],
)
async def test_a_microsoft_token_refused_by_smtp_tells_missing_permission_from_exchange_setup(
    roles: list[str],
    problem: Problem,
    fix: str,
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    tmp_path: Path,
) -> None:
    server, handler = oauth_smtp
    endpoint.roles = roles
    handler.refuse = True  # Exchange Online refuses a token without the role, or for an unregistered app
    diagnosis = await probe(oauth_settings(server, source_env("microsoft_secret", endpoint, tmp_path)))
    assert diagnosis.problem is problem, render_diagnosis(diagnosis)
    assert fix in diagnosis.fix


async def test_a_down_token_endpoint_is_transient_and_bounded(
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler], endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    server, _ = oauth_smtp
    env = source_env("generic", endpoint, tmp_path) | {
        "MAIL_OAUTH_TOKEN_URL": f"http://127.0.0.1:{free_port()}/token"
    }
    settings = oauth_settings(server, env, max_retries=2)
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        with pytest.raises(TransientMailError) as raised:
            await mailer.send(message())
    assert time.monotonic() - started < 2.0
    assert "the OAuth2 token endpoint 127.0.0.1:" in str(raised.value)
    assert "cannot be reached (connection refused)" in str(raised.value)
    assert "gave up after 3 attempts" in str(raised.value)

    diagnosis = await probe(settings)
    assert (diagnosis.problem, diagnosis.exit_code) == (Problem.OAUTH_ENDPOINT_UNREACHABLE, 40)
    assert "MAIL_OAUTH_TOKEN_URL" in diagnosis.fix


async def test_an_untrusted_token_endpoint_gets_no_secret_even_with_validate_certs_false(
    ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    """MAIL_VALIDATE_CERTS=false is about the SMTP server: the token endpoint is verified against the system CAs
    and MAIL_CERT_BUNDLE, so one with a certificate from another CA never receives the client secret."""
    other = trustme.CA(organization_name="A CA nobody configured")
    other_file = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_file))
    with (
        running_token_endpoint(server_tls_context(other, "localhost", "127.0.0.1")) as endpoint,
        running_oauth_smtp(ca, ca_file, endpoint) as (server, _),
    ):
        env = source_env("generic", endpoint, tmp_path)
        assert env["MAIL_OAUTH_TOKEN_URL"].startswith("https://localhost:")
        settings = oauth_settings(server, env, validate_certs=False)
        diagnosis = await probe(settings)
        async with Mailer(settings) as mailer:
            with pytest.raises(PermanentMailError) as raised:
                await mailer.send(message())
        assert endpoint.requests == []  # not one request: the secret never left

        trusted = oauth_settings(server, env, validate_certs=False, cert_bundle=other_file)
        assert (await probe(trusted)).problem is Problem.OK  # the same endpoint, its CA trusted
        assert endpoint.requests == ["client_credentials"]
    assert (diagnosis.problem, diagnosis.exit_code) == (Problem.OAUTH_ENDPOINT_UNTRUSTED, 45)
    assert diagnosis.message.startswith(
        f"the certificate of the OAuth2 token endpoint localhost:{endpoint.url.rpartition(':')[2]} is not trusted"
    )
    assert "operation not permitted" not in diagnosis.message.lower()
    assert "MAIL_CERT_BUNDLE" in diagnosis.fix
    assert "is not trusted" in str(raised.value)
    assert leaked(render_diagnosis(diagnosis, json_output=True) + str(raised.value), endpoint) == []


@pytest.mark.parametrize(
    ("source", "variable"),
    [
        ("microsoft_certificate", "MAIL_OAUTH_CERTIFICATE_FILE"),
        ("google_service_account", "MAIL_OAUTH_SERVICE_ACCOUNT_FILE"),
    ],
)
def test_an_oauth_key_file_other_users_can_read_is_warned_about(
    source: str,
    variable: str,
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    tmp_path: Path,
) -> None:
    server, _ = oauth_smtp
    env = source_env(source, endpoint, tmp_path)
    path = Path(env[variable])
    path.chmod(0o600)
    assert oauth_settings(server, env).warnings() == []
    path.chmod(0o644)
    assert oauth_settings(server, env).warnings() == [
        f"{variable}={path} holds a private key and can be read by other users of this machine (mode 0644): "
        f"chmod 600 {path}"
    ]


async def test_a_slow_token_endpoint_times_out_within_mail_timeout(
    endpoint: TokenEndpoint, oauth_smtp: tuple[SmtpServer, XOAuth2Handler], tmp_path: Path
) -> None:
    server, _ = oauth_smtp
    endpoint.delay = 3.0
    settings = oauth_settings(
        server, source_env("microsoft_secret", endpoint, tmp_path), timeout=0.5, max_retries=1
    )
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        with pytest.raises(TransientMailError, match=r"did not answer within 0\.5 s"):
            await mailer.send(message())
    assert time.monotonic() - started < 1.5

    started = time.monotonic()
    diagnosis = await probe(settings)
    assert diagnosis.problem is Problem.OAUTH_ENDPOINT_UNREACHABLE, render_diagnosis(diagnosis)
    assert time.monotonic() - started < 1.0


async def test_sessions_opening_together_share_one_failed_token_request(
    endpoint: TokenEndpoint, oauth_smtp: tuple[SmtpServer, XOAuth2Handler], tmp_path: Path
) -> None:
    server, _ = oauth_smtp
    endpoint.delay = 4.0
    env = source_env("microsoft_secret", endpoint, tmp_path)
    settings = oauth_settings(server, env, timeout=1.0, max_retries=0, pool_size=4)
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        results = await mailer.send_many(message(n) for n in range(4))
    assert all(isinstance(result, TransientMailError) for result in results)
    assert time.monotonic() - started < 2.5  # one timeout, not four in a row
    assert len(endpoint.requests) == 1


async def test_a_wrong_client_secret_is_permanent_and_diagnosed(
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = oauth_smtp
    wrong = "Wr0ng~secret-value-for-the-test"
    env = source_env("microsoft_secret", endpoint, tmp_path) | {"MAIL_OAUTH_CLIENT_SECRET": wrong}
    settings = oauth_settings(server, env)
    caplog.set_level(logging.DEBUG)
    async with Mailer(settings) as mailer:
        with pytest.raises(PermanentMailError) as raised:
            await mailer.send(message())
    assert len(endpoint.requests) == 1  # not retried
    assert "invalid_client AADSTS7000215: Invalid client secret provided" in str(raised.value)

    diagnosis = await probe(settings)
    assert (diagnosis.problem, diagnosis.exit_code) == (Problem.OAUTH_CLIENT_INVALID, 41)
    assert "MAIL_OAUTH_CLIENT_SECRET (the secret's Value, not its ID" in diagnosis.fix
    for text in (str(raised.value), render_diagnosis(diagnosis, json_output=True), caplog.text):
        assert wrong not in text


@pytest.mark.parametrize(
    ("source", "change", "problem", "fix"),
    [
        (
            "google_service_account",
            {"username": "other@example.com"},
            Problem.OAUTH_CONSENT_MISSING,
            "Domain-wide delegation",
        ),
        (
            "google_refresh_token",
            {"oauth_refresh_token": REFRESH_TOKEN + "-revoked"},
            Problem.OAUTH_GRANT_INVALID,
            "authorize again",
        ),
        (
            "microsoft_secret",
            {"oauth_scope": "https://graph.microsoft.com/.default"},
            Problem.OAUTH_CONSENT_MISSING,
            "admin consent",
        ),
    ],
)
async def test_check_mail_diagnoses_consent_and_grant(
    source: str,
    change: dict[str, str],
    problem: Problem,
    fix: str,
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    tmp_path: Path,
) -> None:
    server, _ = oauth_smtp
    settings = oauth_settings(server, source_env(source, endpoint, tmp_path), **change)
    diagnosis = await probe(settings)
    assert diagnosis.problem is problem, render_diagnosis(diagnosis)
    assert fix in diagnosis.fix


async def test_a_server_that_wants_oauth_points_at_mail_auth_xoauth2(ca: trustme.CA, ca_file: Path) -> None:
    with running_basic_auth_disabled_smtp(ca, ca_file) as server:
        settings = MailSettings(
            server="localhost",
            port=server.port,
            username=MAILBOX,
            password="a-mailbox-password",
            MAIL_FROM=MAILBOX,
            cert_bundle=ca_file,
            timeout=2,
        )
        diagnosis = await probe(settings)
        async with Mailer(settings) as mailer:
            with pytest.raises(PermanentMailError) as raised:
                await mailer.send(message())
    assert (diagnosis.problem, diagnosis.exit_code) == (Problem.OAUTH_REQUIRED, 33), render_diagnosis(
        diagnosis
    )
    assert "5.7.139" in diagnosis.message
    assert "MAIL_AUTH=xoauth2" in diagnosis.fix
    assert "535 5.7.139" in str(raised.value)
    assert "the server wants OAuth2: set MAIL_AUTH=xoauth2" in str(raised.value)


def test_check_mail_command_prints_no_secret(
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = oauth_smtp
    env = server.env() | source_env("generic", endpoint, tmp_path)
    env |= {"MAIL_AUTH": "xoauth2", "MAIL_USERNAME": MAILBOX, "MAIL_FROM": MAILBOX}
    del env["MAIL_PASSWORD"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["check-mail"]) == 0
    monkeypatch.setenv("MAIL_OAUTH_CLIENT_SECRET", CLIENT_SECRET + "-wrong")
    assert main(["check-mail", "--json"]) == 41
    output = capsys.readouterr()
    assert "oauth_client_invalid" in output.out
    assert leaked(output.out + output.err, endpoint) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {},
            "MAIL_AUTH=xoauth2 needs MAIL_OAUTH_TOKEN_URL and MAIL_OAUTH_CLIENT_ID and MAIL_OAUTH_CLIENT_SECRET",
        ),
        (
            {
                "MAIL_OAUTH_PROVIDER": "microsoft",
                "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
                "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            },
            "MAIL_OAUTH_TENANT_ID must be set when MAIL_OAUTH_PROVIDER=microsoft",
        ),
        (
            {
                "MAIL_OAUTH_PROVIDER": "microsoft",
                "MAIL_OAUTH_TENANT_ID": TENANT,
                "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
            },
            "needs exactly one of MAIL_OAUTH_CLIENT_SECRET and MAIL_OAUTH_CERTIFICATE_FILE",
        ),
        (
            {
                "MAIL_OAUTH_PROVIDER": "google",
                "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
                "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            },
            "MAIL_OAUTH_REFRESH_TOKEN must be set when MAIL_OAUTH_PROVIDER=google (or MAIL_OAUTH_SERVICE_ACCOUNT_FILE",
        ),
        (
            {
                "MAIL_OAUTH_PROVIDER": "generic",
                "MAIL_OAUTH_TOKEN_URL": "http://idp.example.com/token",
                "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
                "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            },
            "MAIL_OAUTH_TOKEN_URL uses http:// for idp.example.com",
        ),
        (
            {"MAIL_OAUTH_PROVIDER": "google", "MAIL_OAUTH_SERVICE_ACCOUNT_FILE": "{key}"},
            "is not a service account JSON key",
        ),
        (
            {
                "MAIL_OAUTH_PROVIDER": "microsoft",
                "MAIL_OAUTH_TENANT_ID": TENANT,
                "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
                "MAIL_OAUTH_CERTIFICATE_FILE": "{key}",
            },
            "MAIL_OAUTH_CERTIFICATE_FILE must be a PEM file",
        ),
    ],
)
def test_settings_name_the_variable_to_fix(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_key = tmp_path / "key.json"
    not_a_key.write_text('{"type": "authorized_user", "secret": "' + CLIENT_SECRET + '"}')
    base = {
        "MAIL_SERVER": "smtp.example.com",
        "MAIL_PORT": "587",
        "MAIL_USERNAME": MAILBOX,
        "MAIL_FROM": MAILBOX,
    }
    for name, value in (base | {"MAIL_AUTH": "xoauth2"} | env).items():
        monkeypatch.setenv(name, value.replace("{key}", str(not_a_key)))
    with pytest.raises(SettingsError) as raised:
        load_settings(MailSettings)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)
    assert CLIENT_SECRET not in str(raised.value)


def test_a_loopback_token_url_may_be_plain_http_and_no_password_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "MAIL_SERVER": "smtp.example.com",
        "MAIL_PORT": "587",
        "MAIL_USERNAME": MAILBOX,
        "MAIL_FROM": MAILBOX,
        "MAIL_AUTH": "xoauth2",
        "MAIL_OAUTH_PROVIDER": "generic",
        "MAIL_OAUTH_TOKEN_URL": "http://127.0.0.1:8080/token",
        "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
        "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(MailSettings)
    assert settings.oauth_token_endpoint == "http://127.0.0.1:8080/token"
    assert CLIENT_SECRET not in repr(settings)
    assert CLIENT_SECRET in settings.secret_forms()


PROJECT = Path(__file__).resolve().parents[1]


async def send_one(settings: MailSettings) -> None:
    async with Mailer(settings) as mailer:
        await mailer.send(message())


def test_the_env_example_preset_sends_and_passes_check_mail(
    endpoint: TokenEndpoint,
    oauth_smtp: tuple[SmtpServer, XOAuth2Handler],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`.env.example` as rendered (office365: MAIL_AUTH=xoauth2, Microsoft), pointed at the test parts."""
    lines = (PROJECT / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    if example["MAIL_AUTH"] != "xoauth2":
        pytest.skip(f"this preset logs in with MAIL_AUTH={example['MAIL_AUTH']}")
    server, handler = oauth_smtp
    test_parts = {
        "MAIL_SERVER": "localhost",
        "MAIL_PORT": str(server.port),
        "MAIL_CERT_BUNDLE": str(server.ca_file),
        "MAIL_USERNAME": MAILBOX,
        "MAIL_FROM": MAILBOX,
        "MAIL_OAUTH_CLIENT_ID": CLIENT_ID,
        "MAIL_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "MAIL_OAUTH_TOKEN_URL": endpoint.microsoft_url,
    }
    Path(".env").write_text("".join(f"{name}={value}\n" for name, value in (example | test_parts).items()))
    settings = load_settings(MailSettings)  # from .env, as the service reads it
    assert (settings.auth, settings.oauth_provider) == ("xoauth2", "microsoft")

    asyncio.run(send_one(settings))
    assert server.handler.wait_for(1)[0].message["Subject"] == "oauth 0"
    assert main(["check-mail"]) == 0
    assert handler.oauth_logins == [MAILBOX, MAILBOX]
    output = capsys.readouterr()
    assert "accepted the connection, STARTTLS and login as mailer@example.com" in output.out
    assert leaked(output.out + output.err, endpoint) == []
