"""A pool of up to MAIL_POOL_SIZE open, logged-in SMTP sessions, reused across messages.

A session is taken for one transaction and given back when it went well; one that failed is
closed, never reused. An idle session is closed after MAIL_POOL_IDLE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aiosmtplib

from .errors import classify
from .events import MailEvents
from .session import Login, Progress, open_session, smtp_client
from .settings import SmtpSettings
from .sockets import drop

__all__ = ["CLOSE_TIMEOUT", "Session", "SessionPool"]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 1.0
"""Seconds granted to QUIT when the pool closes its sessions."""


@dataclass(eq=False)
class Session:
    """A connected, authenticated SMTP session owned by the pool; `sent` counts its transactions."""

    smtp: aiosmtplib.SMTP
    transport: asyncio.BaseTransport | None
    events: MailEvents
    sent: int = 0
    idle_since: float = 0.0
    expiry: asyncio.TimerHandle | None = None
    closed: bool = False

    def abort(self) -> None:
        """Close the socket now, without QUIT or TLS goodbye; never raises."""
        drop(self.smtp, self.transport)
        if not self.closed:
            self.closed = True
            self.events.session_closed()


class SessionPool:
    """Sessions to the server of `settings`, opened with `login` (None: no login); `events` hears of each."""

    def __init__(self, settings: SmtpSettings, login: Login | None, events: MailEvents) -> None:
        self._settings = settings
        self._login = login
        self._events = events
        self._secrets = settings.secret_forms()
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[Session] = []
        self._local_hostname: str | None = None

    async def acquire(self) -> Session:
        """A live pooled session, or a new one when none is idle; waits while all are busy."""
        await self._slots.acquire()
        try:
            now = asyncio.get_running_loop().time()
            while self._idle:
                session = self._idle.pop()
                if session.expiry is not None:
                    session.expiry.cancel()
                if session.smtp.is_connected and now - session.idle_since < self._settings.pool_idle_timeout:
                    break
                session.abort()
            else:
                session = await self._open()
        except BaseException:
            self._slots.release()
            raise
        self._events.session_taken()
        return session

    def release(self, session: Session) -> None:
        """Give a healthy session back; it is closed if it stays idle too long."""
        loop = asyncio.get_running_loop()
        session.sent += 1
        session.idle_since = loop.time()
        session.expiry = loop.call_later(self._settings.pool_idle_timeout, self._expire, session)
        self._idle.append(session)
        self._slots.release()
        self._events.session_returned()

    def discard(self, session: Session) -> None:
        """Close a session that failed; it never goes back to the pool."""
        session.abort()
        self._slots.release()
        self._events.session_returned()

    async def close(self) -> None:
        """QUIT and close every idle session (the caller has waited for the ones in use)."""
        sessions, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(session) for session in sessions))

    def _expire(self, session: Session) -> None:
        if session in self._idle:
            self._idle.remove(session)
            logger.debug(
                "closing an SMTP session to %s idle for %.0f s",
                self._settings.where,
                self._settings.pool_idle_timeout,
            )
            session.abort()

    async def _open(self) -> Session:
        """Connect, upgrade to TLS and log in (`open_session`), each step bounded by MAIL_TIMEOUT."""
        smtp = smtp_client(self._settings, self._local_hostname)
        progress = Progress(self._settings.where)
        if self._login is not None:
            self._login.check()
        try:
            await open_session(smtp, self._settings, progress, self._login)
        except BaseException as error:
            drop(smtp)
            if isinstance(error, Exception):
                raise classify(error, progress.action, self._secrets) from error
            raise
        self._local_hostname = smtp.local_hostname
        logger.debug("opened an SMTP session to %s", self._settings.where)
        self._events.session_opened()
        return Session(smtp, smtp.transport, self._events)

    async def _quit(self, session: Session) -> None:
        """Say QUIT (bounded by CLOSE_TIMEOUT, errors ignored), then close the socket."""
        if session.expiry is not None:
            session.expiry.cancel()
        with contextlib.suppress(Exception):
            await session.smtp.quit(timeout=min(CLOSE_TIMEOUT, self._settings.timeout))
        session.abort()
