"""Hooks for watching a `Mailer` work (metrics, tracing), without this package depending on any of them.

`Mailer(settings, events=...)` calls a `MailEvents` as its pool and transactions change; every
method does nothing, so a subclass overrides only what it needs. The calls are synchronous and
must be quick and never raise: they run on the event loop, in the middle of a send.
`failure_class` names what failed in a few bounded words, fit for a metric label.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from .errors import DeliveryOutcomeUnknownError, _causes
from .oauth import TokenError

__all__ = ["FAILURE_CLASSES", "MailEvents", "failure_class"]

FAILURE_CLASSES = ("4xx", "5xx", "auth", "tls", "timeout", "connect", "no_reply", "other")
"""Every value `failure_class` returns."""


class MailEvents:
    """What a `Mailer` reports; the methods do nothing unless overridden."""

    def session_opened(self) -> None:
        """An SMTP session was connected, secured and logged in."""

    def session_closed(self) -> None:
        """A session that `session_opened` reported was closed (idle, failed, or the mailer closed)."""

    def session_taken(self) -> None:
        """A session was taken from the pool for a transaction."""

    def session_returned(self) -> None:
        """A session taken for a transaction was given back (or discarded after a failure)."""

    def transaction_finished(self, seconds: float, result: str) -> None:
        """One SMTP transaction (MAIL, RCPT, DATA) ended after `seconds`: `result` is "2xx" or a
        `failure_class`."""

    def token_refreshed(self, ok: bool) -> None:
        """An OAuth2 token was requested (MAIL_AUTH=xoauth2); `ok` is whether one was issued."""


def failure_class(error: BaseException) -> str:
    """What `error` (a `MailError`, or what aiosmtplib raised) was, as one of FAILURE_CLASSES: the
    server's reply class, or the step that failed."""
    causes = list(_causes(error))
    if any(isinstance(cause, DeliveryOutcomeUnknownError) for cause in causes):
        return "no_reply"
    if any(isinstance(cause, TokenError | aiosmtplib.SMTPAuthenticationError) for cause in causes):
        return "auth"
    if any(isinstance(cause, ssl.SSLError) for cause in causes):
        return "tls"
    code = getattr(error, "reply_code", None) or getattr(error, "code", None)
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):  # every recipient refused: the worst reply
        code = max((refusal.code for refusal in error.recipients), default=None)
    if isinstance(code, int) and 400 <= code < 600:
        return f"{code // 100}xx"
    if any(isinstance(cause, TimeoutError) for cause in causes):
        return "timeout"
    if any(isinstance(cause, OSError) for cause in causes):
        return "connect"
    return "other"
