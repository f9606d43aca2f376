"""The pooled Mailer against a real SMTP server (STARTTLS, trustme CA, AUTH), with faults injected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme
from aiosmtplib.email import flatten_message
from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType, MultipartSubtypeEnum

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.mail import (
    DeliveryResult,
    Mailer,
    MailError,
    MailSettings,
    PermanentMailError,
    TransientMailError,
)
from {{ cookiecutter.package_name }}.mail.core.errors import DeliveryOutcomeUnknownError, classify
from {{ cookiecutter.package_name }}.mail.core.mime import serialize
from {{ cookiecutter.package_name }}.mail.signin.password import login_once

from .raw_servers import listening, smtp_script
from .smtp_server import PASSWORD, USERNAME, SmtpServer, running_server

pytestmark = pytest.mark.anyio

MARGIN = 1.5
"""Seconds allowed on top of the SMTP timeouts for connection set-up and scheduling."""


def message(number: int, *recipients: str) -> MessageSchema:
    return MessageSchema(
        subject=f"Subject {number}",
        recipients=list(recipients or [f"user{number}@example.com"]),
        body=f"Body of message {number}",
        subtype=MessageType.plain,
        headers={"X-Notification-ID": f"n-{number}"},
    )


def notification_ids(server: SmtpServer) -> Counter[str]:
    return Counter(str(received.message["X-Notification-ID"]) for received in server.received)


def sockets_to(port: int) -> int | None:
    """How many sockets this process holds connected to `port` (None without Linux's /proc)."""
    if not Path("/proc/self/net/tcp").exists():
        return None
    inodes: set[str] = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path("/proc/self/net") / table
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            count += int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes
    return count


async def eventually(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until `condition()` holds; the server runs in another thread, so there is no event to await."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def assert_no_socket_left(port: int, server: SmtpServer | None = None) -> None:
    """No socket of this process is still connected to `port`, and `server` saw every connection close."""
    if server is not None:
        await eventually(lambda: server.handler.open_connections() == 0)
    await eventually(lambda: sockets_to(port) in (0, None))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never says a word (no SMTP greeting)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port: int = listener.getsockname()[1]
        yield port


async def test_send_delivers_over_tls_with_login(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    async with Mailer(mail_settings) as mailer:
        result = await mailer.send(message(1, "alice@example.com", "bob@example.com"))

    assert result.accepted == ("alice@example.com", "bob@example.com")
    assert result.refused == {}
    assert result.attempts == 1
    [received] = smtp_server.received
    assert received.mail_from == "noreply@example.com"
    assert received.recipients == ("alice@example.com", "bob@example.com")
    assert received.tls
    assert received.login == USERNAME
    email = received.message
    assert email["Subject"] == "Subject 1"
    assert email["Message-ID"] == result.message_id
    assert email["X-Notification-ID"] == "n-1"
    assert "Test Sender" in email["From"]
    assert email.get_body(("plain",)).get_content().strip() == "Body of message 1"


def rich_message(attachment: Path) -> MessageSchema:
    """Non-ASCII and folded headers, Cc, Bcc, Reply-To, text + HTML alternatives and an attachment."""
    return MessageSchema(
        subject="Café ☕ report: " + "a subject long enough to be folded over several lines " * 2,
        recipients=["Zoë Ünicode <zoe@example.com>"],
        cc=["carl@example.com"],
        bcc=["hidden@example.com"],
        reply_to=["support@example.com"],
        body="Plain text: naïve café.",
        alternative_body="<p>HTML: naïve café.</p>",
        subtype=MessageType.plain,
        multipart_subtype=MultipartSubtypeEnum.alternative,
        attachments=[str(attachment)],
        headers={"X-Notification-ID": "n-rich"},
    )


@pytest.fixture
def attachment(tmp_path: Path) -> Path:
    path = tmp_path / "report.csv"
    path.write_text("day,count\n1,42\n")
    return path


async def test_rich_message_arrives_intact_without_bcc_header(
    smtp_server: SmtpServer, mail_settings: MailSettings, attachment: Path
) -> None:
    async with Mailer(mail_settings) as mailer:
        result = await mailer.send(rich_message(attachment))

    assert result.accepted == ("zoe@example.com", "carl@example.com", "hidden@example.com")
    [received] = smtp_server.received
    assert received.recipients == result.accepted
    email = received.message
    assert email["Subject"] == str(rich_message(attachment).subject)
    assert email["To"] == "Zoë Ünicode <zoe@example.com>"
    assert email["Bcc"] is None
    assert b"hidden@example.com" not in received.data
    assert email.get_body(("plain",)).get_content() == "Plain text: naïve café."
    assert email.get_body(("html",)).get_content() == "<p>HTML: naïve café.</p>"
    [part] = email.iter_attachments()
    assert part.get_filename() == "report.csv"
    assert part.get_payload(decode=True) == b"day,count\n1,42\n"


@pytest.mark.parametrize("rich", [False, True], ids=["plain", "rich"])
async def test_serialize_is_byte_identical_to_aiosmtplib(rich: bool, attachment: Path) -> None:
    config = ConnectionConfig(
        MAIL_USERNAME="",
        MAIL_PASSWORD="",
        MAIL_FROM="noreply@example.com",
        MAIL_FROM_NAME="Sendér",
        MAIL_PORT=587,
        MAIL_SERVER="localhost",
        MAIL_STARTTLS=True,
        MAIL_SSL_TLS=False,
    )
    built = await FastMail(config).get_message(rich_message(attachment) if rich else message(1))
    assert not isinstance(built, list)

    data = serialize(built)

    # serialize() fixed the boundaries on `built`, so aiosmtplib's generator must give the same bytes.
    assert data == flatten_message(built, cte_type="7bit")
    assert all(str(part.get_boundary()).startswith("=_") for part in built.walk() if part.is_multipart())
    assert b"\nBcc:" not in data


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # TLS is implicit
async def test_implicit_tls_delivers(ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_server(ca, ca_file, tls="implicit") as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        async with Mailer(MailSettings()) as mailer:
            await mailer.send(message(1))

    [received] = server.received
    assert received.tls
    assert received.login == USERNAME


async def test_send_many_spreads_over_at_most_pool_size_connections(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    async with Mailer(mail_settings) as mailer:
        results = await mailer.send_many(message(number) for number in range(50))

    assert all(isinstance(result, DeliveryResult) for result in results)
    assert [result.accepted for result in results if isinstance(result, DeliveryResult)] == [
        (f"user{number}@example.com",) for number in range(50)
    ]
    assert notification_ids(smtp_server) == Counter(f"n-{number}" for number in range(50))
    assert all(received.tls and received.login == USERNAME for received in smtp_server.received)
    assert 1 <= len(smtp_server.handler.connections) <= mail_settings.pool_size


async def test_sequential_sends_reuse_one_session(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    async with Mailer(mail_settings) as mailer:
        for number in range(3):
            await mailer.send(message(number))
        assert sockets_to(smtp_server.port) in (1, None), "the session stays open for the next message"

    assert len(smtp_server.received) == 3
    assert len(smtp_server.handler.connections) == 1
    await assert_no_socket_left(smtp_server.port, smtp_server)


async def test_temporary_data_failure_is_retried_on_a_new_session(
    smtp_server: SmtpServer, mail_settings: MailSettings, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.data_replies.append("451 4.3.0 try later")
    async with Mailer(mail_settings) as mailer:
        result = await mailer.send(message(1))

    assert result.attempts == 2
    assert notification_ids(smtp_server) == {"n-1": 1}
    assert len(smtp_server.handler.connections) == 2, "the session that failed must not be reused"
    await assert_no_socket_left(smtp_server.port, smtp_server)
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "451 4.3.0 try later" in warning.getMessage()
    assert "retry 1 of 3" in warning.getMessage()
    assert f"sending notification n-1 ({result.message_id}) to user1@example.com" in warning.getMessage()


async def test_control_characters_of_a_refusal_do_not_reach_the_log(
    smtp_server: SmtpServer, mail_settings: MailSettings, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.data_replies.append("451 4.3.0 try\x1b[2J later\x07")
    async with Mailer(mail_settings) as mailer:
        await mailer.send(message(1))

    assert "try [2J later" in caplog.text
    assert "\x1b" not in caplog.text
    assert "\x07" not in caplog.text


async def test_each_message_arrives_once_despite_temporary_failures(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    smtp_server.handler.data_replies.extend(["451 4.3.0 try later"] * 6)
    async with Mailer(mail_settings) as mailer:
        results = await mailer.send_many(message(number) for number in range(10))

    assert all(isinstance(result, DeliveryResult) for result in results)
    assert sum(result.attempts for result in results if isinstance(result, DeliveryResult)) == 10 + 6
    assert notification_ids(smtp_server) == Counter(f"n-{number}" for number in range(10))


async def test_gives_up_after_max_retries_with_the_server_reply(smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_replies.extend(["451 4.3.0 try later"] * 3)
    async with Mailer(MailSettings(max_retries=2)) as mailer:
        with pytest.raises(TransientMailError) as caught:
            await mailer.send(message(1, "carol@example.com"))

    error = caught.value
    assert error.reply_code == 451
    assert "carol@example.com" in str(error)
    assert "451 4.3.0 try later" in str(error)
    assert "gave up after 3 attempts" in str(error)
    assert "\n" not in str(error)
    assert isinstance(error.__cause__, aiosmtplib.SMTPDataError)
    assert smtp_server.received == []


async def test_refused_recipient_is_reported_and_others_delivered(
    smtp_server: SmtpServer, mail_settings: MailSettings, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.refused.add("gone@example.com")
    async with Mailer(mail_settings) as mailer:
        result = await mailer.send(message(1, "alice@example.com", "gone@example.com"))

    assert result.accepted == ("alice@example.com",)
    assert result.refused == {"gone@example.com": "550 5.1.1 unknown mailbox"}
    assert result.attempts == 1
    [received] = smtp_server.received
    assert received.recipients == ("alice@example.com",)
    assert len(smtp_server.handler.connections) == 1
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("gone@example.com" in text and "550" in text for text in warnings)


async def test_message_refused_for_every_recipient_fails_alone(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    smtp_server.handler.refused.add("gone@example.com")
    async with Mailer(mail_settings) as mailer:
        results = await mailer.send_many(
            [message(1), message(2, "gone@example.com"), message(3)],
        )

    first, refused, third = results
    assert isinstance(first, DeliveryResult)
    assert isinstance(third, DeliveryResult)
    assert isinstance(refused, PermanentMailError)
    assert refused.reply_code == 550
    assert "gone@example.com (550 5.1.1 unknown mailbox)" in str(refused)
    assert isinstance(refused.__cause__, aiosmtplib.SMTPRecipientsRefused)
    assert notification_ids(smtp_server) == {"n-1": 1, "n-3": 1}


async def test_wrong_password_fails_at_once_and_leaves_no_socket(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Passw0rd-Given"
    started = time.monotonic()
    async with Mailer(MailSettings(password=wrong)) as mailer:
        with pytest.raises(PermanentMailError) as caught:
            await mailer.send(message(1))
    elapsed = time.monotonic() - started

    error = caught.value
    assert elapsed < 1.0
    assert error.reply_code == 535
    assert str(error).startswith(f"login to localhost:{smtp_server.port} failed: server replied 535")
    assert "MAIL_PASSWORD" in str(error)
    for text in (str(error), repr(error), caplog.text):
        assert wrong not in text
        assert PASSWORD not in text
    assert len(smtp_server.handler.connections) == 1, "a refused login must not be retried"
    await assert_no_socket_left(smtp_server.port, smtp_server)


async def test_wrong_password_makes_one_refused_login_then_cools_down(smtp_server: SmtpServer) -> None:
    settings = MailSettings(password="Wr0ng-Passw0rd-Given", login_cooldown=60)
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        results = await mailer.send_many([message(number) for number in range(8)])

    assert time.monotonic() - started < 1.0
    assert smtp_server.handler.logins == [("PLAIN", False)], "one method, one refusal, then no login at all"
    assert all(isinstance(result, PermanentMailError) for result in results)
    assert all("server replied 535" in str(result) and "MAIL_PASSWORD" in str(result) for result in results)
    assert sum("MAIL_LOGIN_COOLDOWN" in str(result) for result in results) == 7, "all but the refused one"
    assert smtp_server.received == []


@pytest.mark.parametrize(
    ("plain_reply", "logins"),
    [("504 5.5.4 mechanism not available\r\n", 2), ("535 5.7.8 bad credentials\r\n", 1)],
    ids=["method-refused-next-one-tried", "credentials-refused-no-other-method"],
)
async def test_another_login_method_only_when_the_server_refused_the_method(
    plain_reply: str, logins: int
) -> None:
    script = smtp_script(
        "220 x\r\n",
        "250-x\r\n250 AUTH PLAIN LOGIN\r\n",
        plain_reply,
        "334 UGFzc3dvcmQ6\r\n",  # AUTH LOGIN came with the user name: the password, please
        "235 2.7.0 ok\r\n",
    )
    with listening(script) as listener:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, timeout=2, start_tls=False)
        await smtp.connect()
        try:
            if logins == 2:
                assert (await login_once(smtp, USERNAME, PASSWORD)).code == 235
            else:
                with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                    await login_once(smtp, USERNAME, PASSWORD)
                assert refused.value.code == 535
        finally:
            smtp.close()


async def test_login_is_tried_again_after_the_cool_down(smtp_server: SmtpServer) -> None:
    async with Mailer(MailSettings(password="Wr0ng-Passw0rd-Given", login_cooldown=0.2)) as mailer:
        for _ in range(2):
            with pytest.raises(PermanentMailError):
                await mailer.send(message(1))
        await asyncio.sleep(0.25)
        with pytest.raises(PermanentMailError):
            await mailer.send(message(1))

    assert smtp_server.handler.logins == [("PLAIN", False), ("PLAIN", False)]


async def test_untrusted_certificate_is_permanent(smtp_server: SmtpServer) -> None:
    async with Mailer(MailSettings(cert_bundle=None)) as mailer:
        with pytest.raises(PermanentMailError) as caught:
            await mailer.send(message(1))

    assert str(caught.value).startswith(f"STARTTLS with localhost:{smtp_server.port} failed: TLS certificate")
    assert "MAIL_CERT_BUNDLE" in str(caught.value)
    assert len(smtp_server.handler.connections) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # TLS is implicit
async def test_starttls_against_an_implicit_tls_port_fails_fast_naming_the_settings(
    ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_server(ca, ca_file, "implicit") as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        settings = MailSettings(
            starttls=True, ssl_tls=False, allow_port_mismatch=True, timeout=5, max_retries=3
        )
        started = time.monotonic()
        async with Mailer(settings) as mailer:
            with pytest.raises(PermanentMailError) as caught:
                await mailer.send(message(1))
        elapsed = time.monotonic() - started
        await assert_no_socket_left(server.port)

    assert elapsed < 1.0 + MARGIN, "recognised long before MAIL_TIMEOUT, without retries"
    assert "speaks TLS from the first byte" in str(caught.value)
    assert "set MAIL_SSL_TLS=true and MAIL_STARTTLS=false" in str(caught.value)


async def test_unverified_certificates_are_warned_about(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with Mailer(MailSettings(validate_certs=False)) as mailer:
        await mailer.send(message(1))
    assert "MAIL_VALIDATE_CERTS=false: the server certificate is not verified" in caplog.text
    caplog.clear()
    async with Mailer(MailSettings()):
        pass
    assert "MAIL_VALIDATE_CERTS" not in caplog.text


async def test_server_down_fails_in_bounded_time(smtp_server: SmtpServer) -> None:
    closed_port = free_port()
    settings = MailSettings(port=closed_port, timeout=0.5, max_retries=2)
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        with pytest.raises(TransientMailError) as caught:
            await mailer.send(message(1))

    assert time.monotonic() - started < settings.timeout * 3 + MARGIN
    assert str(caught.value).startswith(f"connect to localhost:{closed_port} failed: connection refused")
    assert "gave up after 3 attempts" in str(caught.value)


async def test_server_that_never_greets_times_out(smtp_server: SmtpServer, silent_port: int) -> None:
    settings = MailSettings(port=silent_port, timeout=0.2, max_retries=1)
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        with pytest.raises(TransientMailError) as caught:
            await mailer.send(message(1))
    elapsed = time.monotonic() - started

    assert settings.timeout * 2 <= elapsed < settings.timeout * 2 + MARGIN
    assert str(caught.value).startswith(f"connect to localhost:{silent_port} failed:")
    assert "MAIL_TIMEOUT" in str(caught.value)
    await assert_no_socket_left(silent_port)


async def test_late_reply_to_the_end_of_data_is_awaited_with_mail_data_timeout(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.delay = 0.6  # past MAIL_TIMEOUT: once 3 notifications became 12 emails
    settings = MailSettings(timeout=0.2, data_timeout=5.0, max_retries=3)
    async with Mailer(settings) as mailer:
        results = await mailer.send_many([message(1), message(2), message(3)])

    assert [result.attempts for result in results if isinstance(result, DeliveryResult)] == [1, 1, 1]
    assert notification_ids(smtp_server) == {"n-1": 1, "n-2": 1, "n-3": 1}


async def test_no_reply_to_the_end_of_data_is_not_retried(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.delay = 1.0
    settings = MailSettings(timeout=0.2, data_timeout=0.3, max_retries=3)
    started = time.monotonic()
    async with Mailer(settings) as mailer:
        with pytest.raises(DeliveryOutcomeUnknownError) as caught:
            await mailer.send(message(1, "dave@example.com"))

    assert time.monotonic() - started < settings.data_timeout + MARGIN
    assert isinstance(caught.value, PermanentMailError)
    assert "dave@example.com" in str(caught.value)
    assert "MAIL_DATA_TIMEOUT" in str(caught.value)
    assert "the server may have accepted it or not (outcome unknown)" in str(caught.value)
    assert "retry" not in caplog.text
    await asyncio.sleep(smtp_server.handler.delay + 0.2)  # the server's late answers would have come in
    assert len(smtp_server.handler.connections) == 1
    assert sum(notification_ids(smtp_server).values()) <= 1
    await assert_no_socket_left(smtp_server.port, smtp_server)


async def test_awaiting_reply_tells_which_send_the_server_holds(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    smtp_server.handler.delay = 0.5
    async with Mailer(mail_settings) as mailer:
        sending = asyncio.create_task(mailer.send(message(1)))
        assert not mailer.awaiting_reply(sending)
        await asyncio.to_thread(smtp_server.handler.wait_held, 1)
        assert mailer.awaiting_reply(sending)  # its message went out, the reply has not come
        await sending
        assert not mailer.awaiting_reply(sending)

    assert notification_ids(smtp_server) == {"n-1": 1}


async def test_idle_session_is_closed_and_replaced(smtp_server: SmtpServer) -> None:
    async with Mailer(MailSettings(pool_idle_timeout=0.05)) as mailer:
        await mailer.send(message(1))
        await eventually(lambda: smtp_server.handler.open_connections() == 0)
        result = await mailer.send(message(2))

    assert result.attempts == 1
    assert notification_ids(smtp_server) == {"n-1": 1, "n-2": 1}
    assert len(smtp_server.handler.connections) == 2


async def test_session_closed_by_server_is_replaced_without_a_retry(smtp_server: SmtpServer) -> None:
    async with Mailer(MailSettings(max_retries=0)) as mailer:
        await mailer.send(message(1))
        smtp_server.handler.drop_connections()
        result = await mailer.send(message(2))

    assert result.attempts == 1
    assert notification_ids(smtp_server) == {"n-1": 1, "n-2": 1}
    assert len(smtp_server.handler.connections) == 2


async def test_aclose_waits_for_sends_in_flight(smtp_server: SmtpServer, mail_settings: MailSettings) -> None:
    smtp_server.handler.delay = 0.1
    mailer = Mailer(mail_settings)
    sending = asyncio.create_task(mailer.send(message(1)))
    await asyncio.sleep(0)  # the send starts and connects

    await mailer.aclose()

    assert sending.done()
    assert sending.result().attempts == 1
    assert notification_ids(smtp_server) == {"n-1": 1}
    await assert_no_socket_left(smtp_server.port, smtp_server)
    with pytest.raises(RuntimeError, match="closed"):
        await mailer.send(message(2))


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (aiosmtplib.SMTPResponseException(421, "4.3.2 shutting down"), TransientMailError, 421),
        (aiosmtplib.SMTPDataError(554, "5.7.1 rejected as spam"), PermanentMailError, 554),
        (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 try again"), TransientMailError, 454),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), TransientMailError, None),
        (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), TransientMailError, None),
        (ConnectionResetError(104, "Connection reset by peer"), TransientMailError, None),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), PermanentMailError, None),
        (ValueError("Address 'a b@example.com' contains characters not permitted"), PermanentMailError, None),
    ],
)
def test_classify(error: Exception, kind: type[MailError], code: int | None) -> None:
    classified = classify(error, "sending n-1 to a@example.com")

    assert type(classified) is kind
    assert classified.transient is (kind is TransientMailError)
    assert classified.reply_code == code
    assert classified.__cause__ is error
    assert str(classified).startswith("sending n-1 to a@example.com failed: ")


@pytest.mark.parametrize(
    "failure",
    [
        ssl.SSLError(),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        KeyError("bug"),
        RuntimeError(),
    ],
    ids=["bare-ssl-error", "ssl-eof", "key-error", "runtime-error"],
)
async def test_send_raises_only_mail_errors(
    smtp_server: SmtpServer, mail_settings: MailSettings, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def fail(*args: object, **kwargs: object) -> None:
        raise failure

    async with Mailer(mail_settings) as mailer:
        await mailer.send(message(1))
        monkeypatch.setattr(aiosmtplib.SMTP, "rcpt", fail)
        with pytest.raises(MailError) as caught:
            await mailer.send(message(2))
    assert caught.value.__cause__ is failure
    assert "n-2" in str(caught.value)
    with pytest.raises(MailError, match="closed"):
        await mailer.send(message(3))


async def test_tls_eof_on_a_pooled_session_is_retried(
    smtp_server: SmtpServer, mail_settings: MailSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rcpt = aiosmtplib.SMTP.rcpt
    failures = [ssl.SSLEOFError(8, "EOF occurred in violation of protocol")]

    async def rcpt_once_lost(self: aiosmtplib.SMTP, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if failures:
            raise failures.pop()
        return await real_rcpt(self, *args, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "rcpt", rcpt_once_lost)
    async with Mailer(mail_settings) as mailer:
        result = await mailer.send(message(1))
    assert result.attempts == 2
    assert notification_ids(smtp_server) == {"n-1": 1}


@pytest.mark.parametrize(
    "error",
    [
        ssl.SSLError(),
        ssl.SSLError("no reason attribute"),
        ssl.SSLCertVerificationError(),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        aiosmtplib.SMTPResponseException(550, None),  # type: ignore[arg-type]
        KeyError(),
    ],
    ids=[
        "bare-ssl-error",
        "ssl-error-with-text",
        "bare-cert-error",
        "ssl-eof",
        "reply-without-text",
        "key-error",
    ],
)
def test_classify_never_raises(error: Exception) -> None:
    for connected in (False, True):
        classified = classify(error, "sending n-1", connected=connected)
        assert isinstance(classified, MailError)
        assert classified.__cause__ is error


def test_tls_failure_after_the_session_was_up_is_transient() -> None:
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert isinstance(classify(eof, "sending n-1", connected=True), TransientMailError)
    assert isinstance(classify(eof, "connect to host:465"), PermanentMailError)
    verification = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert isinstance(classify(verification, "sending n-1", connected=True), PermanentMailError)


def test_classify_removes_control_characters_of_server_replies() -> None:
    reply = aiosmtplib.SMTPResponseException(550, "5.7.1 no\x1b[2J\x07 way\x00\x85here")
    classified = str(classify(reply, "sending n-1"))
    assert classified == "sending n-1 failed: server replied 550 5.7.1 no [2J way here"
    assert all(char.isprintable() for char in classified)


def test_classify_redacts_before_cleaning_up() -> None:
    tabbed = "Tab\tand\x1bEscape-In-It"
    error = aiosmtplib.SMTPAuthenticationError(535, f"bad password {tabbed} given")
    classified = str(classify(error, "login to smtp.example.com:587", secrets=[tabbed]))
    assert classified.endswith(
        "server replied 535 bad password *** given: check MAIL_USERNAME and MAIL_PASSWORD"
    )


def test_classify_redacts_secrets_and_keeps_one_line() -> None:
    error = aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials\nfor hunter2-Secret")

    classified = classify(error, "login to smtp.example.com:587", secrets=["hunter2-Secret", ""])

    assert "hunter2-Secret" not in str(classified)
    assert "\n" not in str(classified)
    assert "***" in str(classified)
