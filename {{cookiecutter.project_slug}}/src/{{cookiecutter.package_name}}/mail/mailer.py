"""`Mailer`: sends fastapi-mail messages over a small pool of authenticated SMTP sessions.

fastapi-mail's `FastMail.send_message` opens a connection, negotiates TLS with a new TLS
context, logs in, sends and quits for every call. `Mailer` keeps up to
`MAIL_POOL_SIZE` sessions open and reuses them, with one TLS context for every
connection, so a message costs a single SMTP transaction. Messages are still built by
fastapi-mail (templates, attachments, headers), once per message.

Transient failures (lost connection, timeout, 4xx reply) are retried with exponential
backoff and jitter; permanent ones (5xx reply, refused login, TLS or settings problems)
are raised at once, and so is a missing reply to the end of the data (`MAIL_DATA_TIMEOUT`):
the message may have been delivered, and a retry could duplicate it. A session that failed
is closed, never reused. A pooled session that idled past `MAIL_POOL_IDLE_TIMEOUT` is
closed; one the server closed is replaced without counting as an attempt. After a refused
login no new one is tried for `MAIL_LOGIN_COOLDOWN` seconds.

A `Mailer` belongs to the event loop that first uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender
from fastapi_mail import FastMail, MessageSchema

from . import sniff
from .errors import MailError, PermanentMailError, TransientMailError, classify, printable
from .login import LoginGuard, login_once
from .mime import (
    ascii_domains,
    drop_multipart_encodings,
    international_addresses,
    serialize,
    single_message_id,
)
from .oauth import TokenCache, xoauth2_login
from .settings import MailSettings, security_warnings
from .transaction import transact

__all__ = ["DeliveryResult", "Mailer", "MailerClosedError"]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 1.0
"""Seconds granted to QUIT when the mailer closes its sessions."""

_LISTED_RECIPIENTS = 3

NOTIFICATION_ID_HEADER = "X-Notification-ID"
"""The header whose value names a message in log lines and errors (else its Message-ID)."""


@dataclass(frozen=True)
class DeliveryResult:
    """What the server accepted for one message.

    `refused` maps each refused recipient to the server's reply ("550 5.1.1 unknown mailbox");
    `attempts` counts delivery attempts, 1 when the first one succeeded; `reply` is the
    server's answer to the message ("250 2.0.0 queued as 4F2A").
    """

    message_id: str
    accepted: tuple[str, ...]
    refused: Mapping[str, str]
    attempts: int
    reply: str = ""


@dataclass(frozen=True)
class _Envelope:
    """A message built once and flattened to the bytes every attempt sends."""

    message_id: str
    notification_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]

    @property
    def subject(self) -> str:
        """What log lines call the message: its notification id when it has one, else its Message-ID."""
        if self.notification_id:
            return f"notification {self.notification_id} ({self.message_id})"
        return self.message_id

    @property
    def action(self) -> str:
        listed = ", ".join(self.recipients[:_LISTED_RECIPIENTS])
        more = len(self.recipients) - _LISTED_RECIPIENTS
        return f"sending {self.subject} to {listed}" + (f" and {more} more" if more > 0 else "")


@dataclass(eq=False)
class _Session:
    """A connected, authenticated SMTP session owned by the pool."""

    smtp: aiosmtplib.SMTP
    transport: asyncio.BaseTransport | None
    sent: int = 0
    idle_since: float = 0.0
    expiry: asyncio.TimerHandle | None = None

    def abort(self) -> None:
        """Close the socket now, without QUIT or TLS goodbye; never raises."""
        _abort(self.smtp, self.transport)


class MailerClosedError(PermanentMailError, RuntimeError):
    """`send` on a `Mailer` after `aclose()`."""


class Mailer:
    """Sends `fastapi_mail.MessageSchema` messages over up to `settings.pool_size` SMTP sessions.

    Use it as `async with Mailer(settings) as mailer:` or call `await mailer.aclose()`.
    """

    def __init__(self, settings: MailSettings) -> None:
        self._settings = settings
        self._fastmail = FastMail(settings.connection_config())
        self._where = f"{settings.server}:{settings.port}"
        self._secrets = settings.secret_forms()
        self._logins = LoginGuard(settings.login_cooldown, self._secrets)
        for warning in security_warnings(settings):
            logger.warning(warning)
        self._tokens = TokenCache(settings) if settings.auth == "xoauth2" else None
        self._signer = settings.dkim_signer
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[_Session] = []
        self._local_hostname: str | None = None
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(
        self, message: MessageSchema, *, recipients: Sequence[str] | None = None
    ) -> DeliveryResult:
        """Send `message`; raises `MailError` (and nothing else but cancellation) when it cannot be delivered.

        A closed mailer raises `MailerClosedError`, a `MailError` too. `recipients` limits the
        envelope to some of the message's addresses (e.g. those a server deferred); by default it
        holds every To, Cc and Bcc address. A `Message-ID` in `message.headers` is kept (the same
        on every attempt); otherwise fastapi-mail makes one.
        """
        self._ensure_open()
        self._in_flight += 1
        self._drained.clear()
        try:
            envelope = await self._envelope(message, recipients)
            return await self._deliver(envelope)
        except MailError:
            raise
        except Exception as error:  # a bug, reported as a MailError all the same
            raise classify(error, "sending", self._secrets) from error
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()

    async def send_many(self, messages: Iterable[MessageSchema]) -> list[DeliveryResult | MailError]:
        """Send `messages` concurrently over the pool.

        Returns, in input order, each message's `DeliveryResult` or the `MailError` it failed with;
        one failure never stops the others.
        """
        self._ensure_open()
        numbered = list(enumerate(messages))
        queue = iter(numbered)
        results: dict[int, DeliveryResult | MailError] = {}

        async def worker() -> None:
            for index, message in queue:
                try:
                    results[index] = await self.send(message)
                except MailError as error:
                    results[index] = error

        await asyncio.gather(*(worker() for _ in range(min(self._settings.pool_size, len(numbered)))))
        return [results[index] for index in range(len(numbered))]

    async def aclose(self) -> None:
        """Wait for the sends in flight, then QUIT and close every session. Safe to call twice."""
        self._closed = True
        await self._drained.wait()
        sessions, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(session) for session in sessions))

    def _ensure_open(self) -> None:
        if self._closed:
            raise MailerClosedError("this Mailer is closed; create a new one")

    async def _envelope(self, message: MessageSchema, only: Sequence[str] | None = None) -> _Envelope:
        """Build the MIME message with fastapi-mail and flatten it, once for all attempts."""
        try:
            built = await self._fastmail.get_message(ascii_domains(message, self._settings.from_address))
            mime = international_addresses(
                single_message_id(drop_multipart_encodings(built[0] if isinstance(built, list) else built))
            )
            sender = extract_sender(mime)
            recipients = tuple(extract_recipients(mime)) if only is None else tuple(only)
            if not sender or not recipients:
                raise ValueError("the message needs a sender and at least one recipient")
            utf8 = not all(address.isascii() for address in (sender, *recipients))
            return _Envelope(
                message_id=str(mime.get("Message-ID", "")),
                notification_id=printable(str(mime.get(NOTIFICATION_ID_HEADER, ""))),
                sender=sender,
                recipients=recipients,
                data=self._sign(serialize(mime, utf8=utf8)),
                mail_options=("SMTPUTF8",) if utf8 else (),
            )
        except Exception as error:
            raise classify(error, "building the message", self._secrets) from error

    def _sign(self, data: bytes) -> bytes:
        """`data` with a DKIM-Signature when MAIL_DKIM_DOMAIN is set: the bytes sent, signed once."""
        return self._signer.sign(data) if self._signer is not None else data

    async def _deliver(self, envelope: _Envelope) -> DeliveryResult:
        """Attempt delivery until it succeeds, fails permanently or runs out of retries."""
        retries = self._settings.max_retries
        attempt = 1
        while True:
            try:
                refused, reply = await self._attempt(envelope)
            except TransientMailError as error:
                if attempt > retries:
                    if attempt == 1:
                        raise
                    raise TransientMailError(
                        f"{error} (gave up after {attempt} attempts)", reply_code=error.reply_code
                    ) from error.__cause__
                delay = self._backoff(attempt)
                logger.warning("%s; retry %d of %d in %.2f s", error, attempt, retries, delay)
                await asyncio.sleep(delay)
                attempt += 1
            else:
                return self._result(envelope, refused, attempt, reply)

    async def _attempt(self, envelope: _Envelope) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """One SMTP transaction; returns the refused recipients and the server's reply to the message.

        A pooled session that turns out to be closed by the server is replaced, and the
        transaction repeated on a new session, without counting as an attempt.
        """
        while True:
            session = await self._acquire()
            try:
                refused, reply = await transact(
                    session.smtp,
                    envelope.sender,
                    envelope.recipients,
                    envelope.data,
                    mail_options=envelope.mail_options,
                    data_timeout=self._settings.data_timeout,
                    action=envelope.action,
                )
            except BaseException as error:
                self._discard(session)
                if not isinstance(error, Exception):
                    raise
                if session.sent and _is_disconnect(error):
                    logger.debug("the server closed a pooled session to %s; replacing it", self._where)
                    continue
                raise classify(error, envelope.action, self._secrets, connected=True) from error
            session.sent += 1
            self._release(session)
            return refused, reply

    def _result(
        self, envelope: _Envelope, refused: Mapping[str, aiosmtplib.SMTPResponse], attempts: int, reply: str
    ) -> DeliveryResult:
        refusals = {address: printable(f"{reply.code} {reply.message}") for address, reply in refused.items()}
        accepted = tuple(address for address in envelope.recipients if address not in refusals)
        if refusals:
            logger.warning(
                "%s: the server refused %s; accepted %d other recipient(s)",
                envelope.subject,
                ", ".join(f"{address} ({reply})" for address, reply in refusals.items()),
                len(accepted),
            )
        return DeliveryResult(envelope.message_id, accepted, refusals, attempts, " ".join(reply.split()))

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait before retry `attempt`: retry_base_delay * 2**(attempt-1), +-50% jitter."""
        jitter = random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not cryptography
        return float(self._settings.retry_base_delay * 2 ** (attempt - 1) * jitter)

    async def _acquire(self) -> _Session:
        """A live pooled session, or a new one when none is idle; waits while all are busy."""
        await self._slots.acquire()
        try:
            now = asyncio.get_running_loop().time()
            while self._idle:
                session = self._idle.pop()
                if session.expiry is not None:
                    session.expiry.cancel()
                if session.smtp.is_connected and now - session.idle_since < self._settings.pool_idle_timeout:
                    return session
                session.abort()
            return await self._open()
        except BaseException:
            self._slots.release()
            raise

    def _release(self, session: _Session) -> None:
        """Return a healthy session to the pool; it is closed if it stays idle too long."""
        loop = asyncio.get_running_loop()
        session.idle_since = loop.time()
        session.expiry = loop.call_later(self._settings.pool_idle_timeout, self._expire, session)
        self._idle.append(session)
        self._slots.release()

    def _discard(self, session: _Session) -> None:
        """Close a session that failed; it never goes back to the pool."""
        session.abort()
        self._slots.release()

    def _expire(self, session: _Session) -> None:
        if session in self._idle:
            self._idle.remove(session)
            logger.debug(
                "closing an SMTP session to %s idle for %.0f s", self._where, self._settings.pool_idle_timeout
            )
            session.abort()

    async def _open(self) -> _Session:
        """Connect, upgrade to TLS and log in, each step bounded by settings.timeout."""
        settings = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.server,
            port=settings.port,
            timeout=settings.timeout,
            use_tls=settings.ssl_tls,
            start_tls=False,
            tls_context=settings.tls_context if settings.encrypted else None,
            local_hostname=self._local_hostname,
        )
        action = f"connect to {self._where}"
        if settings.use_credentials:
            self._logins.check()
        try:
            if settings.ssl_tls:
                await smtp.connect()
            else:
                await sniff.connect(
                    smtp, self._where, sniff_after=min(sniff.SNIFF_AFTER, settings.timeout / 4)
                )
            self._local_hostname = smtp.local_hostname
            if settings.starttls:
                action = f"STARTTLS with {self._where}"
                await smtp.starttls()
            if settings.use_credentials:
                action = f"login to {self._where}"
                if self._tokens is not None:  # sessions share one token; a refused one is renewed once
                    await xoauth2_login(smtp, settings, self._tokens)
                else:
                    async with self._logins.attempt(action):
                        await login_once(smtp, settings.username, settings.password.get_secret_value())
        except BaseException as error:
            _abort(smtp)
            if isinstance(error, Exception):
                raise classify(error, action, self._secrets) from error
            raise
        logger.debug("opened an SMTP session to %s", self._where)
        return _Session(smtp, smtp.transport)

    async def _quit(self, session: _Session) -> None:
        """Say QUIT (bounded by CLOSE_TIMEOUT, errors ignored), then close the socket."""
        if session.expiry is not None:
            session.expiry.cancel()
        with contextlib.suppress(Exception):
            await session.smtp.quit(timeout=min(CLOSE_TIMEOUT, self._settings.timeout))
        session.abort()


def _is_disconnect(error: Exception) -> bool:
    """True when the server closed the session (lost connection or "421 closing")."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code == 421
    return isinstance(error, aiosmtplib.SMTPServerDisconnected)


def _abort(smtp: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None = None) -> None:
    """Close the socket of `smtp` (and `transport`) now, without QUIT or TLS goodbye; never raises."""
    with contextlib.suppress(Exception):
        for each in (transport, smtp.transport):
            if isinstance(each, asyncio.WriteTransport):
                each.abort()
            elif each is not None:
                each.close()
        smtp.close()
