"""The mail probe against real servers: every diagnosis class, its exit code, its time bound, no password."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from fastapi_mail import MessageSchema

from {{ cookiecutter.package_name }}.api.health import ProbeCache
from {{ cookiecutter.package_name }}.devsmtp import (
    PasswordAuthenticator,
    StoringHandler,
    TlsMode,
    free_port,
    server_tls_context,
    start_server,
)
from {{ cookiecutter.package_name }}.mail import Mailer, MailSettings, SettingsError, load_settings
from {{ cookiecutter.package_name }}.mail.doctor.advice import login_advice
from {{ cookiecutter.package_name }}.mail.doctor.diagnosis import Diagnosis, Problem, render_diagnosis, settings_diagnosis
from {{ cookiecutter.package_name }}.mail.doctor.probe import probe

from .raw_servers import ACCEPTING, ScriptedListener, full_backlog, hang_up, listening, silent, smtp_script
from .smtp_server import PASSWORD, USERNAME, commands_read, cram_md5_only_server, running_server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("error::ResourceWarning"),  # an unclosed socket fails the test
    # aiosmtpd cannot tell that an implicit-TLS session is encrypted; these servers are meant to be so.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

TIMEOUT = 2.0
WAIT_OUT = 0.5  # MAIL_TIMEOUT for the cases that must wait the whole timeout
SECRETS = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode())


def settings_for(port: int, ca_file: Path, tls: TlsMode = "starttls", **overrides: Any) -> MailSettings:
    values: dict[str, Any] = {
        "server": "localhost",
        "port": port,
        "username": USERNAME,
        "password": PASSWORD,
        "MAIL_FROM": "noreply@example.com",
        "starttls": tls == "starttls",
        "ssl_tls": tls == "implicit",
        "cert_bundle": ca_file,
        "timeout": TIMEOUT,
    }
    return MailSettings(**(values | overrides))


async def diagnose(settings: MailSettings, expected: Problem) -> Diagnosis:
    """Probe; check the class, the time bound, and that no rendering holds the password."""
    started = time.monotonic()
    diagnosis = await probe(settings)
    elapsed = time.monotonic() - started
    assert diagnosis.problem is expected, diagnosis
    assert diagnosis.exit_code == expected.exit_code
    assert elapsed < settings.timeout + 1
    assert diagnosis.elapsed <= elapsed
    outputs = (repr(diagnosis), render_diagnosis(diagnosis), render_diagnosis(diagnosis, json_output=True))
    for secret in SECRETS:
        assert not any(secret in output for output in outputs)
    return diagnosis


@contextmanager
def serving(tls: TlsMode, context: ssl.SSLContext | None, users: dict[str, str] | None) -> Iterator[int]:
    """An aiosmtpd server in the given mode; yields its port."""
    controller = start_server(StoringHandler(lambda _: None), tls=tls, tls_context=context, users=users)
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    other = trustme.CA(organization_name="Some Other CA")
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    other.cert_pem.write_to_path(str(path))
    return other, path


# -- success -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_ok_after_tls_and_login_without_sending(ca: trustme.CA, ca_file: Path, tls: TlsMode) -> None:
    with running_server(ca, ca_file, tls) as server:
        diagnosis = await diagnose(settings_for(server.port, ca_file, tls), Problem.OK)
        assert server.received == []
    assert diagnosis.exit_code == 0
    mode = "STARTTLS" if tls == "starttls" else "implicit TLS"
    assert f"{mode} and login as {USERNAME}" in diagnosis.message
    assert render_diagnosis(diagnosis).startswith("OK: ")


async def test_ok_without_tls_or_login_on_loopback(ca_file: Path) -> None:
    with serving("plain", None, None) as port:
        settings = settings_for(port, ca_file, "plain", use_credentials=False, username="", password="")
        diagnosis = await diagnose(settings, Problem.OK)
    assert "no TLS and no login" in diagnosis.message


async def test_quit_is_a_courtesy_bounded_by_half_a_second(ca_file: Path) -> None:
    with listening(smtp_script(*ACCEPTING)) as listener:  # never answers QUIT
        settings = settings_for(listener.port, ca_file, "plain", use_credentials=False, timeout=WAIT_OUT)
        diagnosis = await diagnose(settings, Problem.OK)
        assert listener.wait_idle(1.0), "the probe left a connection open"
    assert diagnosis.elapsed < 1.0  # QUIT waited at most CLOSE_TIMEOUT (0.5 s)


@pytest.mark.parametrize(("password", "expected"), [(PASSWORD, Problem.OK), ("wrong", Problem.AUTH_FAILED)])
async def test_login_mechanism_is_used_when_plain_is_not_offered(
    ca: trustme.CA, ca_file: Path, password: str, expected: Problem
) -> None:
    controller = Controller(
        StoringHandler(lambda _: None),
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        tls_context=server_tls_context(ca),
        require_starttls=True,
        authenticator=PasswordAuthenticator({USERNAME: PASSWORD}),
        auth_exclude_mechanism=["PLAIN"],
    )
    controller.start()
    try:
        await diagnose(settings_for(controller.port, ca_file, password=password), expected)
    finally:
        controller.stop()


# -- reaching the server ---------------------------------------------------------------------------


async def test_dns_failure(ca_file: Path) -> None:
    diagnosis = await diagnose(settings_for(587, ca_file, server="mail.invalid"), Problem.DNS_FAILURE)
    assert "MAIL_SERVER=mail.invalid" in diagnosis.message


async def test_connection_refused(ca_file: Path) -> None:
    diagnosis = await diagnose(settings_for(free_port(), ca_file), Problem.CONNECTION_REFUSED)
    assert "MAIL_PORT" in diagnosis.fix


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full accept queue")
async def test_connect_timeout_names_the_firewall(ca_file: Path) -> None:
    with full_backlog() as port:
        diagnosis = await diagnose(settings_for(port, ca_file, timeout=WAIT_OUT), Problem.CONNECT_TIMEOUT)
    assert diagnosis.elapsed >= WAIT_OUT
    assert "firewall" in diagnosis.fix


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_no_greeting_within_the_timeout(ca_file: Path, tls: TlsMode) -> None:
    with listening(silent) as listener:
        diagnosis = await diagnose(
            settings_for(listener.port, ca_file, tls, timeout=WAIT_OUT), Problem.NO_GREETING
        )
        assert listener.wait_idle(1.0), "the probe left a connection open"
    assert diagnosis.elapsed >= WAIT_OUT


def starttls_then_garbage(connection: socket.socket) -> None:
    """Agrees to STARTTLS, then answers the TLS ClientHello with plain text."""
    connection.sendall(b"220 x\r\n")
    with connection.makefile("rb") as incoming:
        for reply in (b"250-x\r\n250 STARTTLS\r\n", b"220 go ahead\r\n"):
            incoming.readline()
            connection.sendall(reply)
        while incoming.read1(4096):
            connection.sendall(b"this is not TLS\r\n")


@pytest.mark.parametrize(
    ("script", "expected", "words"),
    [
        (hang_up, Problem.CONNECTION_CLOSED, "closed the connection while waiting for the greeting"),
        (smtp_script("HTTP/1.1 400 Bad Request\r\n\r\n"), Problem.NOT_SMTP, "HTTP/1.1 400"),
        (smtp_script("554 5.7.1 this address is blocked\r\n"), Problem.SERVER_REJECTED, "554 5.7.1"),
        (smtp_script("220 slow ESMTP\r\n"), Problem.SERVER_TIMEOUT, "during EHLO"),
        (
            smtp_script("220 x\r\n", "250-x\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n"),
            Problem.UNEXPECTED_REPLY,
            "answered STARTTLS with a temporary failure: 454 4.7.0",
        ),
        (starttls_then_garbage, Problem.TLS_FAILED, "TLS handshake"),
        (smtp_script("220 x\r\n", "250-x\r\n250 STARTTLS\r\n", ""), Problem.CONNECTION_CLOSED, "STARTTLS"),
    ],
)
async def test_misbehaving_servers(ca_file: Path, script: Any, expected: Problem, words: str) -> None:
    with listening(script) as listener:
        diagnosis = await diagnose(settings_for(listener.port, ca_file, timeout=WAIT_OUT), expected)
        assert listener.wait_idle(1.0), "the probe left a connection open"
    assert words in diagnosis.message


# -- TLS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "plain"])
async def test_implicit_tls_port_is_recognised_quickly(ca: trustme.CA, ca_file: Path, tls: TlsMode) -> None:
    with running_server(ca, ca_file, "implicit") as server:
        settings = settings_for(server.port, ca_file, tls)
        diagnosis = await diagnose(settings, Problem.IMPLICIT_TLS_ON_STARTTLS_PORT)
    assert diagnosis.elapsed < TIMEOUT / 2, "should not wait for the full timeout"
    assert "MAIL_SSL_TLS=true" in diagnosis.fix


async def test_plain_smtp_port_with_implicit_tls_is_recognised_quickly(ca: trustme.CA, ca_file: Path) -> None:
    with running_server(ca, ca_file, "starttls") as server:
        diagnosis = await diagnose(
            settings_for(server.port, ca_file, "implicit"), Problem.STARTTLS_ON_IMPLICIT_TLS_PORT
        )
    assert diagnosis.elapsed < TIMEOUT / 2
    assert "MAIL_STARTTLS=true" in diagnosis.fix
    assert "220 " in diagnosis.message


async def test_certificate_from_another_ca_is_untrusted_until_its_bundle_is_given(
    ca_file: Path, other_ca_file: tuple[trustme.CA, Path]
) -> None:
    other_ca, other_file = other_ca_file
    with serving("starttls", server_tls_context(other_ca), {USERNAME: PASSWORD}) as port:
        diagnosis = await diagnose(settings_for(port, ca_file), Problem.CERTIFICATE_UNTRUSTED)
        await diagnose(settings_for(port, other_file), Problem.OK)
    assert "MAIL_CERT_BUNDLE" in diagnosis.fix


async def test_certificate_for_another_name(ca: trustme.CA, ca_file: Path) -> None:
    with serving("implicit", server_tls_context(ca, "mail.other.example"), {USERNAME: PASSWORD}) as port:
        diagnosis = await diagnose(settings_for(port, ca_file, "implicit"), Problem.HOSTNAME_MISMATCH)
    assert "localhost" in diagnosis.message
    assert "MAIL_SERVER" in diagnosis.fix


async def test_expired_certificate(ca: trustme.CA, ca_file: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    ca.issue_cert(
        "localhost", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
    ).configure_cert(context)
    with serving("starttls", context, {USERNAME: PASSWORD}) as port:
        await diagnose(settings_for(port, ca_file), Problem.CERTIFICATE_EXPIRED)


async def test_starttls_not_offered(ca_file: Path) -> None:
    with serving("plain", None, {USERNAME: PASSWORD}) as port:
        diagnosis = await diagnose(settings_for(port, ca_file), Problem.STARTTLS_NOT_OFFERED)
    assert "587" in diagnosis.fix


def test_unreadable_cert_bundle_is_a_settings_problem(ca_file: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not a certificate\n")
    values = settings_for(free_port(), ca_file).model_dump()
    values["MAIL_FROM"] = values.pop("from_address")
    with pytest.raises(SettingsError) as raised:
        load_settings(MailSettings, **{**values, "cert_bundle": bundle})
    diagnosis = settings_diagnosis(raised.value)
    assert diagnosis.problem is Problem.SETTINGS_INVALID
    assert "MAIL_CERT_BUNDLE" in diagnosis.message


# -- login -----------------------------------------------------------------------------------------


async def test_login_offered_only_after_tls(ca: trustme.CA, ca_file: Path) -> None:
    with running_server(ca, ca_file, "starttls") as server:
        diagnosis = await diagnose(settings_for(server.port, ca_file, "plain"), Problem.AUTH_REQUIRES_TLS)
    assert "MAIL_STARTTLS=true" in diagnosis.fix


async def test_login_not_offered(ca_file: Path) -> None:
    with serving("plain", None, None) as port:
        diagnosis = await diagnose(settings_for(port, ca_file, "plain"), Problem.AUTH_NOT_OFFERED)
    assert "MAIL_USE_CREDENTIALS=false" in diagnosis.fix


async def test_wrong_password(ca: trustme.CA, ca_file: Path) -> None:
    with running_server(ca, ca_file, "starttls") as server:
        settings = settings_for(server.port, ca_file, password="wrong-" + PASSWORD)
        diagnosis = await diagnose(settings, Problem.AUTH_FAILED)
    assert f"MAIL_USERNAME={USERNAME}" in diagnosis.message
    assert "535" in diagnosis.message
    assert "wrong-" not in render_diagnosis(diagnosis, json_output=True)


async def test_password_echoed_by_the_server_is_redacted(ca_file: Path) -> None:
    echo = smtp_script("220 x\r\n", "250-x\r\n250 AUTH PLAIN\r\n", f"535 5.7.8 {PASSWORD} is not it\r\n")
    with listening(echo) as listener:
        diagnosis = await diagnose(settings_for(listener.port, ca_file, "plain"), Problem.AUTH_FAILED)
    assert "535 5.7.8 *** is not it" in diagnosis.message


async def test_check_mail_and_the_mailer_agree_on_a_cram_md5_only_server(
    ca: trustme.CA, ca_file: Path
) -> None:
    with cram_md5_only_server(ca, ca_file) as server:
        settings = settings_for(server.port, ca_file)
        diagnosis = await diagnose(settings, Problem.OK)
        async with Mailer(settings) as mailer:
            await mailer.send(
                MessageSchema(subject="s", recipients=["a@example.com"], body="b", subtype="plain")
            )
    assert "STARTTLS and login as mailer" in diagnosis.message
    assert len(server.received) == 1
    assert server.handler.logins == [("CRAM-MD5", True), ("CRAM-MD5", True)]
    assert len(server.handler.ehlo_names) == 4  # each says EHLO before and after STARTTLS
    assert len(set(server.handler.ehlo_names)) == 1, "both say EHLO with the same name"


async def test_each_step_has_its_own_mail_timeout(ca_file: Path) -> None:
    step = TIMEOUT * 0.6  # each reply in time, all of them together past MAIL_TIMEOUT

    def slow(connection: socket.socket) -> None:
        time.sleep(step)
        connection.sendall(b"220 slow but steady\r\n")
        with connection.makefile("rb") as lines:
            for reply in (b"250 x\r\n", b"250 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"221 bye\r\n"):
                if not lines.readline():
                    return
                time.sleep(step if reply == b"250 x\r\n" else 0)  # the greeting and EHLO are slow
                connection.sendall(reply)

    with listening(slow) as listener:
        settings = settings_for(listener.port, ca_file, "plain", use_credentials=False)
        started = time.monotonic()
        diagnosis = await probe(settings)
    assert diagnosis.ok, diagnosis
    assert time.monotonic() - started > TIMEOUT


async def test_password_cut_by_the_length_limit_is_redacted_first(ca_file: Path) -> None:
    padding = "x" * (197 - len("535 5.7.8 ") - 4)  # cutting at 200 characters would keep 4 of the password
    echo = smtp_script(
        "220 x\r\n", "250-x\r\n250 AUTH PLAIN\r\n", f"535 5.7.8 {padding}{PASSWORD} is not it\r\n"
    )
    with listening(echo) as listener:
        diagnosis = await diagnose(settings_for(listener.port, ca_file, "plain"), Problem.AUTH_FAILED)
    assert PASSWORD[:4] not in diagnosis.message.replace(padding, "")


async def test_password_with_a_tab_is_redacted_before_clean_up(ca_file: Path) -> None:
    tabbed = "Tab\tin-the-Passw0rd"
    echo = smtp_script("220 x\r\n", "250-x\r\n250 AUTH PLAIN\r\n", f"535 5.7.8 {tabbed} is not it\r\n")
    with listening(echo) as listener:
        diagnosis = await probe(settings_for(listener.port, ca_file, "plain", password=tabbed))
    assert diagnosis.problem is Problem.AUTH_FAILED
    assert "535 5.7.8 *** is not it" in diagnosis.message
    assert "in-the-Passw0rd" not in render_diagnosis(diagnosis, json_output=True)


async def test_username_equal_to_the_password_is_not_shown_as_stars(ca_file: Path) -> None:
    with serving("plain", None, {PASSWORD: PASSWORD}) as port:
        diagnosis = await diagnose(settings_for(port, ca_file, "plain", username=PASSWORD), Problem.OK)
    assert "login as (not shown: it contains MAIL_PASSWORD)" in diagnosis.message
    assert "***" not in diagnosis.message


@pytest.mark.parametrize(
    ("server", "username", "advice"),
    [
        ("smtp.gmail.com", "me@gmail.com", "App Password"),
        ("smtp.sendgrid.net", "me", "literal word apikey (it is 'me')"),
        ("smtp.sendgrid.net", "apikey", "Mail Send permission"),
        ("smtp.postmarkapp.com", "token", "Server API token"),
        ("smtp.office365.com", "me@example.com", "Authenticated SMTP"),
        ("email-smtp.eu-west-1.amazonaws.com", "AKIA", "not work as SMTP passwords"),
        ("smtp.eu.mailgun.org", "postmaster@mg.example.com", "SMTP credentials"),
        ("mail.example.com", "me", "check MAIL_USERNAME and MAIL_PASSWORD"),
    ],
)
def test_login_advice_names_the_provider_convention(server: str, username: str, advice: str) -> None:
    assert advice in login_advice(server, username)


# -- the sender: MAIL FROM and RCPT TO, never DATA ------------------------------------------------


PROBE = ["MAIL", "RCPT", "RSET", "QUIT"]
"""What the probe says after the login: the sender, MAIL_FROM as the recipient, then RSET; never DATA."""


async def test_a_server_that_relays_only_after_login_is_diagnosed_without_sending(
    ca: trustme.CA, ca_file: Path
) -> None:
    """Postfix's `permit_sasl_authenticated, reject`: the login is optional, but RCPT is refused without it."""
    with running_server(ca, ca_file, auth_required=False) as server:
        server.handler.relay_needs_login = True
        no_login = settings_for(server.port, ca_file, use_credentials=False, username="", password="")
        with commands_read() as refused_dialogue:
            diagnosis = await diagnose(no_login, Problem.RELAY_REFUSED)
        with commands_read() as login_dialogue:
            await diagnose(settings_for(server.port, ca_file), Problem.OK)
        assert server.received == []
    assert diagnosis.exit_code == 62
    assert "refused RCPT TO for MAIL_FROM=noreply@example.com: 554 5.7.1" in diagnosis.message
    assert "Client host rejected" in diagnosis.message
    assert "set MAIL_USE_CREDENTIALS=true with MAIL_USERNAME and MAIL_PASSWORD" in diagnosis.fix
    assert refused_dialogue == ["EHLO", "STARTTLS", "EHLO", *PROBE]
    assert login_dialogue == ["EHLO", "STARTTLS", "EHLO", "AUTH", *PROBE]


async def test_a_sender_the_login_does_not_own_is_diagnosed(ca: trustme.CA, ca_file: Path) -> None:
    """Postfix's `reject_sender_login_mismatch`: `553 5.7.1 <addr>: Sender address rejected: not owned by user`."""
    with running_server(ca, ca_file) as server:
        server.handler.owned = {"mailer@example.com"}
        with commands_read() as dialogue:
            diagnosis = await diagnose(settings_for(server.port, ca_file), Problem.SENDER_NOT_OWNED)
        await diagnose(settings_for(server.port, ca_file, MAIL_FROM="mailer@example.com"), Problem.OK)
        assert server.received == []
    assert diagnosis.exit_code == 61
    assert "refused MAIL FROM for MAIL_FROM=noreply@example.com: 553 5.7.1" in diagnosis.message
    assert "not owned by user" in diagnosis.message
    assert diagnosis.fix.startswith("MAIL_FROM must be an address the login owns or may send as")
    assert f"MAIL_USERNAME={USERNAME}" in diagnosis.fix
    assert dialogue == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RSET", "QUIT"]


async def test_a_server_offering_login_to_a_client_that_does_not_log_in_is_ok_with_a_warning(
    ca: trustme.CA, ca_file: Path
) -> None:
    with running_server(ca, ca_file, auth_required=False) as server:
        no_login = settings_for(server.port, ca_file, use_credentials=False, username="", password="")
        diagnosis = await diagnose(no_login, Problem.OK)
        logged_in = await diagnose(settings_for(server.port, ca_file), Problem.OK)
    [warning] = diagnosis.warnings
    assert warning.startswith(f"localhost:{server.port} offers login (AUTH ")
    assert "but MAIL_USE_CREDENTIALS=false" in warning
    assert logged_in.warnings == ()
    assert diagnosis.message.endswith("no login, and takes mail from noreply@example.com")


def after_login(*replies: str) -> Any:
    """A plain server without login that accepts EHLO, then gives `replies` to MAIL FROM, RCPT TO, ..."""
    return smtp_script("220 x\r\n", "250 x\r\n", *replies)


@pytest.mark.parametrize(
    ("script", "expected", "words"),
    [
        (  # Postfix checks sender restrictions at RCPT (smtpd_delay_reject=yes)
            after_login(
                "250 2.1.0 Ok\r\n",
                "553 5.7.1 <noreply@example.com>: Sender address rejected: not owned by user mailer\r\n",
                "250 2.0.0 Ok\r\n",
                "221 bye\r\n",
            ),
            Problem.SENDER_NOT_OWNED,
            "refused RCPT TO for MAIL_FROM=noreply@example.com: 553 5.7.1",
        ),
        (
            after_login("530 5.7.0 Authentication required\r\n", "250 2.0.0 Ok\r\n", "221 bye\r\n"),
            Problem.SENDER_REFUSED,
            "refused MAIL FROM for MAIL_FROM=noreply@example.com: 530 5.7.0",
        ),
        (
            after_login(
                "250 2.1.0 Ok\r\n", "554 5.7.1 <x@example.org>: Relay access denied\r\n", "250 Ok\r\n"
            ),
            Problem.RELAY_REFUSED,
            "Relay access denied",
        ),
        (after_login(), Problem.SERVER_TIMEOUT, "stopped answering during MAIL FROM"),
        (
            after_login("250 2.1.0 Ok\r\n", ""),
            Problem.CONNECTION_CLOSED,
            "closed the connection while answering RCPT TO",
        ),
    ],
)
async def test_the_sender_step_diagnoses_what_the_server_says(
    ca_file: Path, script: Any, expected: Problem, words: str
) -> None:
    with listening(script) as listener:
        settings = settings_for(listener.port, ca_file, "plain", use_credentials=False, timeout=WAIT_OUT)
        diagnosis = await diagnose(settings, expected)
        assert listener.wait_idle(1.0), "the probe left a connection open"
    assert words in diagnosis.message


async def test_mail_from_unknown_as_a_recipient_is_a_warning_not_a_refusal(ca_file: Path) -> None:
    """A 5.1.1 is about the address, not the client: the server let the client through."""
    unknown = "550 5.1.1 <noreply@example.com>: Recipient address rejected: User unknown\r\n"
    with listening(after_login("250 2.1.0 Ok\r\n", unknown, "250 2.0.0 Ok\r\n", "221 bye\r\n")) as listener:
        settings = settings_for(listener.port, ca_file, "plain", use_credentials=False, timeout=WAIT_OUT)
        diagnosis = await diagnose(settings, Problem.OK)
    [warning] = diagnosis.warnings
    assert "does not take MAIL_FROM=noreply@example.com as a recipient (550 5.1.1" in warning


# -- exit codes, rendering, cache ------------------------------------------------------------------


def test_exit_codes_are_distinct_and_zero_only_for_ok() -> None:
    codes = [problem.exit_code for problem in Problem]
    assert len(set(codes)) == len(codes)
    assert [problem for problem in Problem if problem.exit_code == 0] == [Problem.OK]


def test_rendering_for_people_and_machines() -> None:
    diagnosis = Diagnosis(
        Problem.AUTH_FAILED, "rejected", "use an app password", "smtp.example.com", 587, 0.25
    )
    assert render_diagnosis(diagnosis) == "FAILED [auth_failed]: rejected\nfix: use an app password"
    assert json.loads(render_diagnosis(diagnosis, json_output=True)) == {
        "ok": False,
        "problem": "auth_failed",
        "exit_code": 32,
        "message": "rejected",
        "fix": "use an app password",
        "server": "smtp.example.com",
        "port": 587,
        "elapsed_seconds": 0.25,
    }


def ok_dialogue() -> ScriptedListener:
    return ScriptedListener(smtp_script(*ACCEPTING, "221 bye\r\n"))


async def test_cache_shares_one_probe_among_concurrent_callers(ca_file: Path) -> None:
    listener = ok_dialogue()
    try:
        settings = settings_for(listener.port, ca_file, "plain", use_credentials=False)
        cache = ProbeCache(settings, ttl=60)
        results = await asyncio.gather(*(cache.get() for _ in range(5)))
        assert all(result is results[0] for result in results)
        assert results[0].ok
        assert await cache.get() is results[0]
        assert listener.connections == 1
    finally:
        listener.stop()


async def test_cache_probes_again_once_the_result_is_stale(ca_file: Path) -> None:
    listener = ok_dialogue()
    try:
        cache = ProbeCache(settings_for(listener.port, ca_file, "plain", use_credentials=False), ttl=0)
        first, second = await cache.get(), await cache.get()
        assert first is not second
        assert listener.connections == 2
    finally:
        listener.stop()
