"""`SmtpMailer`: sends fastapi-mail messages over a pool of SMTP sessions, retrying what may pass.

fastapi-mail's `FastMail.send_message` connects, negotiates TLS with a new TLS context, logs in, sends
and quits for every call. This mailer keeps up to MAIL_POOL_SIZE sessions open with one TLS context for
every connection, so a message costs one SMTP transaction; fastapi-mail still builds it, once.

Transient failures (lost connection, timeout, 4xx reply) are retried with exponential backoff
and jitter, but for throttling replies (`throttling.py`: the caller slows down); permanent ones
(5xx reply, refused login, TLS or settings problems) are raised at once, and so is a missing
reply to the end of the data (`DeliveryOutcomeUnknownError`): the message may have been
delivered, so the caller decides whether to send it again. While a send waits for that reply
(up to MAIL_DATA_TIMEOUT), the server holds the message: `awaiting_reply` tells a caller about
to cancel it. A pooled session the server closed is replaced without counting as an attempt.
`Login` and `Sign` come from the package's `Mailer`. A mailer belongs to the loop that first uses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import aiosmtplib
from fastapi_mail import MessageSchema

from .backoff import backoff
from .errors import MailError, PermanentMailError, TransientMailError, classify, is_disconnect, printable
from .events import MailEvents
from .message import Envelope, MessageBuilder, Sign
from .parts import Attachment
from .pool import SessionPool
from .session import Login
from .settings import SmtpSettings
from .throttling import throttle_of_error
from .transaction import transact

__all__ = ["DeliveryResult", "MailerClosedError", "SmtpMailer"]

logger = logging.getLogger(__name__)


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


class MailerClosedError(PermanentMailError, RuntimeError):
    """`send` on a mailer after `aclose()`."""


class SmtpMailer:
    """Sends `fastapi_mail.MessageSchema` messages over up to `settings.pool_size` SMTP sessions.

    Use it as `async with` or call `await mailer.aclose()`. `login` opens each session (None: no
    login), `sign` turns each serialized message into the bytes sent, `events` hears about sessions
    and transactions (see `MailEvents`).
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        login: Login | None = None,
        sign: Sign | None = None,
        events: MailEvents | None = None,
    ) -> None:
        self._settings = settings
        self._events = events or MailEvents()
        self._secrets = settings.secret_forms()
        self._builder = MessageBuilder(settings, sign)
        self._pool = SessionPool(settings, login, self._events)
        for warning in settings.warnings():
            logger.warning(warning)
        self._in_flight = 0
        self._awaiting_reply: set[asyncio.Task[Any]] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def settings(self) -> SmtpSettings:
        """The settings it sends with."""
        return self._settings

    def awaiting_reply(self, task: asyncio.Task[Any]) -> bool:
        """True while `task` is in a send whose message went out and whose reply has not come (MAIL_DATA_TIMEOUT
        at most): the server holds the message, so cancelling `task` now leaves the outcome unknown."""
        return task in self._awaiting_reply

    async def send(
        self,
        message: MessageSchema,
        *,
        recipients: Sequence[str] | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> DeliveryResult:
        """Send `message`; raises `MailError` (and nothing else but cancellation) when it cannot be delivered.

        Retries happen inside this call (up to MAIL_MAX_RETRIES, with backoff). A closed mailer
        raises `MailerClosedError`, a `MailError` too. `recipients` limits the envelope to some of
        the message's addresses (e.g. those a server deferred; the result names them as given); by
        default it holds every To, Cc and Bcc address. A `Message-ID` in `message.headers` is kept
        (the same on every attempt). `attachments` (files, inline images) are encoded once (`parts.py`).
        """
        self._ensure_open()
        self._in_flight += 1
        self._drained.clear()
        try:
            try:
                envelope = await self._builder.build(message, recipients, attachments=attachments)
            except Exception as error:
                raise classify(error, "building the message", self._secrets) from error
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
        await self._pool.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise MailerClosedError("this Mailer is closed; create a new one")

    async def _deliver(self, envelope: Envelope) -> DeliveryResult:
        """Attempt delivery until it succeeds, fails permanently or runs out of retries."""
        retries = self._settings.max_retries
        attempt = 1
        while True:
            try:
                refused, reply = await self._attempt(envelope)
            except TransientMailError as error:
                if throttle_of_error(error) is not None:  # retrying at once is what the server refuses
                    raise
                if attempt > retries:
                    if attempt == 1:
                        raise
                    raise TransientMailError(
                        f"{error} (gave up after {attempt} attempts)",
                        reply_code=error.reply_code,
                        failure=error.failure,
                    ) from error.__cause__
                delay = backoff(attempt, self._settings.retry_base_delay)
                logger.warning("%s; retry %d of %d in %.2f s", error, attempt, retries, delay)
                await asyncio.sleep(delay)
                attempt += 1
            else:
                return self._result(envelope, refused, attempt, reply)

    async def _attempt(self, envelope: Envelope) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """One SMTP transaction; returns the refused recipients and the server's reply to the message.

        A pooled session that turns out to be closed by the server is replaced, and the
        transaction repeated on a new session, without counting as an attempt.
        """
        while True:
            session = await self._pool.acquire()
            started = time.perf_counter()
            try:
                refused, reply = await transact(
                    session.smtp,
                    envelope.sender,
                    envelope.recipients,
                    envelope.data,
                    mail_options=envelope.mail_options,
                    data_timeout=self._settings.data_timeout,
                    action=envelope.action,
                    waiting=self._awaiting_reply,
                )
            except BaseException as error:
                self._pool.discard(session)
                if not isinstance(error, Exception):
                    raise
                failed = classify(error, envelope.action, self._secrets, connected=True)
                self._events.transaction_finished(time.perf_counter() - started, failed.failure)
                if session.sent and is_disconnect(error):
                    logger.debug(
                        "the server closed a pooled session to %s; replacing it", self._settings.where
                    )
                    continue
                raise failed from error
            self._events.transaction_finished(time.perf_counter() - started, "2xx")
            self._pool.release(session)
            return refused, reply

    def _result(
        self, envelope: Envelope, refused: Mapping[str, aiosmtplib.SMTPResponse], attempts: int, reply: str
    ) -> DeliveryResult:
        refusals = {
            envelope.given(address): printable(f"{reply.code} {reply.message}")
            for address, reply in refused.items()
        }
        accepted = tuple(envelope.given(address) for address in envelope.recipients if address not in refused)
        if refusals:
            logger.warning(
                "%s: the server refused %s; accepted %d other recipient(s)",
                envelope.subject,
                ", ".join(f"{address} ({reply})" for address, reply in refusals.items()),
                len(accepted),
            )
        return DeliveryResult(envelope.message_id, accepted, refusals, attempts, " ".join(reply.split()))
