"""Opening an SMTP session: connect, TLS and login, each step within MAIL_TIMEOUT.

The `Mailer` and the doctor's probe (check-mail, /health/mail) both open their sessions with
`open_session`, so they say EHLO with the same name, negotiate TLS alike and log in the same way.
How to log in is a `Login` given by the caller (sign-in: a password or an OAuth2 token).
`Progress.step` tells the caller which step failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import aiosmtplib

from . import sniff
from .settings import SmtpSettings

__all__ = [
    "SESSION_STEPS",
    "Login",
    "Progress",
    "Step",
    "greet",
    "longest_send",
    "open_session",
    "smtp_client",
]

Step = Literal["connect", "ehlo", "starttls", "login"]

SESSION_STEPS = 17
"""The MAIL_TIMEOUT waits of one attempt besides its RCPTs: connect, greeting, EHLO and HELO, STARTTLS, the TLS
handshake, EHLO and HELO again, up to six for the login (refused methods, then the next; XOAUTH2: token, AUTH
and its error challenge, renewed once), MAIL, DATA and RSET."""


class Login(Protocol):
    """Logs in on a connected, secured session."""

    def check(self) -> None:
        """Raise a `MailError` at once when a login is known to fail now (a cool-down), before connecting."""

    async def __call__(self, smtp: aiosmtplib.SMTP, action: str) -> None:
        """Log in on `smtp`; `action` names the step in errors ("login to host:587")."""


@dataclass
class Progress:
    """The step an opening session has reached; `action` names it for error messages."""

    where: str
    step: Step = "connect"

    @property
    def action(self) -> str:
        """The step in words, as in "connect to host:587" or "login to host:587"."""
        verb = {
            "connect": "connect to",
            "ehlo": "EHLO with",
            "starttls": "STARTTLS with",
            "login": "login to",
        }
        return f"{verb[self.step]} {self.where}"


def smtp_client(settings: SmtpSettings, local_hostname: str | None = None) -> aiosmtplib.SMTP:
    """An unconnected aiosmtplib client for `settings`, every step bounded by MAIL_TIMEOUT."""
    return aiosmtplib.SMTP(
        hostname=settings.server,
        port=settings.port,
        timeout=settings.timeout,
        use_tls=settings.ssl_tls,
        start_tls=False,
        tls_context=settings.tls_context if settings.encrypted else None,
        local_hostname=local_hostname,
    )


async def open_session(
    smtp: aiosmtplib.SMTP, settings: SmtpSettings, progress: Progress, login: Login | None
) -> None:
    """Connect `smtp`, upgrade it with STARTTLS as `settings` say, and `login` (None: no login).

    Raises what failed, unclassified. Without implicit TLS, a port that turns out to speak TLS
    from the first byte raises `sniff.ImplicitTlsPortError` quickly.
    """
    if settings.ssl_tls:
        await smtp.connect()
    else:
        await sniff.connect(smtp, progress.where, sniff_after=min(sniff.SNIFF_AFTER, settings.timeout / 4))
    progress.step = "ehlo"
    await greet(smtp)
    if settings.starttls:
        progress.step = "starttls"
        await smtp.starttls()
        progress.step = "ehlo"
        await greet(smtp)
    if login is not None:
        progress.step = "login"
        await login(smtp, progress.action)


async def greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that refuses EHLO."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        await smtp.helo()


def longest_send(settings: SmtpSettings, recipients: int) -> float:
    """The most seconds one `send` to at most `recipients` addresses takes when every step waits its full timeout.

    Each attempt waits MAIL_TIMEOUT per step (`SESSION_STEPS`, plus one RCPT per recipient) and MAIL_DATA_TIMEOUT
    for the reply to the data; there are MAIL_MAX_RETRIES + 1 of them, one more for a pooled session the server
    had closed (replaced without counting), and the longest backoff between them. It assumes the send does
    not wait for a session of the pool held by another send (one send at a time on the mailer).
    """
    attempt = (SESSION_STEPS + recipients) * settings.timeout + settings.data_timeout
    longest_backoff = 1.5 * settings.retry_base_delay * (2**settings.max_retries - 1)
    return float((settings.max_retries + 2) * attempt + longest_backoff)
