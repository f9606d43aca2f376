"""Opening an SMTP session: connect, TLS and login, each step within MAIL_TIMEOUT.

The `Mailer` and the probe behind check-mail and /health/mail both open their sessions with
`open_session`, so they say EHLO with the same name, negotiate TLS alike and log in with the same
methods (CRAM-MD5, PLAIN, LOGIN, or XOAUTH2). `Progress.step` tells the caller which step failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from . import sniff
from .login import LoginGuard, login_once
from .oauth import TokenCache, xoauth2_login
from .settings import MailSettings

__all__ = ["Progress", "Step", "open_session", "smtp_client"]

Step = Literal["connect", "ehlo", "starttls", "login"]


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


def smtp_client(settings: MailSettings, local_hostname: str | None = None) -> aiosmtplib.SMTP:
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
    smtp: aiosmtplib.SMTP,
    settings: MailSettings,
    progress: Progress,
    *,
    tokens: TokenCache | None = None,
    logins: LoginGuard | None = None,
) -> None:
    """Connect `smtp`, upgrade it with STARTTLS and log in, as `settings` say; raises what failed, unclassified.

    Without implicit TLS, a port that turns out to speak TLS from the first byte raises
    `sniff.ImplicitTlsPortError` quickly. XOAUTH2 logs in with a token from `tokens` (a new cache
    when none is given); a password login goes through `logins` when given (its cool-down).
    """
    if settings.ssl_tls:
        await smtp.connect()
    else:
        await sniff.connect(smtp, progress.where, sniff_after=min(sniff.SNIFF_AFTER, settings.timeout / 4))
    await _greet(smtp, progress)
    if settings.starttls:
        progress.step = "starttls"
        await smtp.starttls()
        await _greet(smtp, progress)
    if not settings.use_credentials:
        return
    progress.step = "login"
    if settings.auth == "xoauth2":
        if "xoauth2" not in smtp.server_auth_methods:
            raise aiosmtplib.SMTPException("the server does not offer AUTH XOAUTH2")
        await xoauth2_login(smtp, settings, tokens or TokenCache(settings))
    elif logins is not None:
        async with logins.attempt(progress.action):
            await login_once(smtp, settings.username, settings.password.get_secret_value())
    else:
        await login_once(smtp, settings.username, settings.password.get_secret_value())


async def _greet(smtp: aiosmtplib.SMTP, progress: Progress) -> None:
    """EHLO, or HELO for a server that refuses it."""
    progress.step = "ehlo"
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        await smtp.helo()
