"""Hooks for watching a `Mailer` work (metrics, tracing), without this package depending on any of them.

`Mailer(settings, events=...)` calls a `MailEvents` as its pool and transactions change; every
method does nothing, so a subclass overrides only what it needs. The calls are synchronous and
must be quick and never raise: they run on the event loop, in the middle of a send.
"""

from __future__ import annotations

__all__ = ["MailEvents"]


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
        `MailError.failure` class (see `errors.FAILURE_CLASSES`)."""

    def token_refreshed(self, ok: bool) -> None:
        """An OAuth2 token was requested (MAIL_AUTH=xoauth2); `ok` is whether one was issued."""
