"""OAuth2 access tokens for `AUTH XOAUTH2`: the errors of getting one, and one cache shared by every session.

`TokenCache` holds one token for a `Mailer`: every pooled session that logs in uses it; it is
fetched again only shortly before it expires (one request in flight at a time), or once when the
SMTP server refuses it. An endpoint that is down, slow or failing raises `TokenUnavailableError`
(transient); a refused client, consent or grant raises `TokenRefusedError`, and an endpoint whose
certificate is not trusted `TokenEndpointUntrustedError` (both permanent). Each carries a one-line
`reason` and `fix`, never a secret. Nothing here needs authlib (`oauth.py` does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ..core.errors import MailError, PermanentMailError, TransientMailError
from ..core.events import MailEvents

__all__ = [
    "AccessToken",
    "TokenCache",
    "TokenEndpointUntrustedError",
    "TokenError",
    "TokenFailure",
    "TokenRefusedError",
    "TokenUnavailableError",
]


class TokenFailure(StrEnum):
    """Why no token was issued (or used); the values are check-mail's problem classes."""

    UNREACHABLE = "oauth_endpoint_unreachable"  # the endpoint is down, slow or failing
    CLIENT = "oauth_client_invalid"  # unknown client, wrong secret, certificate or key
    CONSENT = "oauth_consent_missing"  # the app lacks the permission or delegation for the scope or mailbox
    GRANT = "oauth_grant_invalid"  # refresh token revoked or expired, subject not allowed
    REFUSED = "oauth_token_refused"  # the endpoint issued a token but the SMTP server refused it
    UNTRUSTED = "oauth_endpoint_untrusted"  # its certificate does not verify: nothing was sent to it


class TokenError(MailError):
    """A token could not be obtained or was refused: `reason` and `fix` are one line each, `kind` says why."""

    failure = "auth"

    def __init__(self, reason: str, fix: str, kind: TokenFailure) -> None:
        super().__init__(f"{reason}: {fix}")
        self.reason, self.fix, self.kind = reason, fix, kind


class TokenUnavailableError(TokenError, TransientMailError):
    """The token endpoint did not answer in time, could not be reached, or failed (5xx)."""


class TokenRefusedError(TokenError, PermanentMailError):
    """The token endpoint refused the client or grant, or the SMTP server refused the token."""


class TokenEndpointUntrustedError(TokenError, PermanentMailError):
    """The token endpoint's certificate does not verify (system CAs and MAIL_CERT_BUNDLE): no request was sent."""

    failure = "tls"


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and the `time.monotonic()` after which it is renewed."""

    value: str = field(repr=False)
    renew_at: float

    @property
    def fresh(self) -> bool:
        """True until shortly before the token expires."""
        return time.monotonic() < self.renew_at


class TokenCache:
    """One token shared by every session of a mailer (from `fetch`), renewed shortly before it expires.

    Concurrent callers wait for the single request in flight instead of making their own, and
    share its outcome: when it fails, they fail with it rather than each asking again.
    `requests` counts the token requests made; `events` hears of each (`MailEvents.token_refreshed`).
    """

    def __init__(self, fetch: Callable[[], Awaitable[AccessToken]], events: MailEvents | None = None) -> None:
        self._fetch = fetch
        self._events = events
        self._token: AccessToken | None = None
        self._failure: TokenError | None = None
        self._finished = 0  # token requests that have ended, either way
        self._lock = asyncio.Lock()
        self.requests = 0

    async def get(self) -> str:
        """A token that is not about to expire."""
        token = self._token
        if token is not None and token.fresh:
            return token.value
        return await self._fetch_once(lambda token: token is not None and token.fresh)

    async def renew(self, refused: str) -> str:
        """A token other than `refused`, which the SMTP server did not accept."""
        return await self._fetch_once(lambda token: token is not None and token.value != refused)

    async def _fetch_once(self, usable: Callable[[AccessToken | None], bool]) -> str:
        """The cached token if `usable`, else a new one; a request that failed while we waited is ours too."""
        finished_before = self._finished
        async with self._lock:
            if self._token is not None and usable(self._token):
                return self._token.value
            failure = self._failure
            if failure is not None and self._finished != finished_before:
                raise type(failure)(failure.reason, failure.fix, failure.kind)
            self.requests += 1
            try:
                self._token = await self._fetch()
            except TokenError as error:
                self._failure = error
                self._report(ok=False)
                raise
            else:
                self._failure = None
                self._report(ok=True)
            finally:
                self._finished += 1
            return self._token.value

    def _report(self, *, ok: bool) -> None:
        if self._events is not None:
            self._events.token_refreshed(ok)
