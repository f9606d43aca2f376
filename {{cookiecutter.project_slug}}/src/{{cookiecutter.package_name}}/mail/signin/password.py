"""Password login without storming the server: one method per refused login, then a cool-down.

aiosmtplib's `SMTP.login` tries every method both sides support until one works, so a wrong
password costs two or three refusals per connection. Providers lock accounts after a few of
them. Here a refused login (5xx) is not repeated with another method, and for
`MAIL_LOGIN_COOLDOWN` seconds no new login is tried: sends fail at once with the diagnosis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiosmtplib

from ..core.errors import MailError, PermanentMailError, classify

__all__ = ["LoginGuard", "PasswordLogin", "login_once"]

_METHOD_UNAVAILABLE = frozenset({504, 534, 538})
"""Replies that refuse the method, not the credentials: the next method may work."""


async def login_once(smtp: aiosmtplib.SMTP, username: str, password: str) -> aiosmtplib.SMTPResponse:
    """Log in with the first method both sides support (CRAM-MD5, PLAIN, LOGIN).

    The next method is tried only when the server refused the method itself (504, 534, 538),
    never after it refused the credentials.
    """
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    methods = smtp.supported_auth_methods
    if not methods:
        return await smtp.login(username, password)  # aiosmtplib's diagnosis: no AUTH, or no common method
    for method in methods[:-1]:
        try:
            return await _authenticate(smtp, method, username, password)
        except aiosmtplib.SMTPAuthenticationError as error:
            if error.code not in _METHOD_UNAVAILABLE:
                raise
    return await _authenticate(smtp, methods[-1], username, password)


async def _authenticate(
    smtp: aiosmtplib.SMTP, method: str, username: str, password: str
) -> aiosmtplib.SMTPResponse:
    """aiosmtplib's `auth_<method>` ("cram-md5" is `auth_crammd5`)."""
    response: aiosmtplib.SMTPResponse = await getattr(smtp, f"auth_{method.replace('-', '')}")(
        username, password
    )
    return response


class LoginGuard:
    """Lets one login run at a time, and none for `cooldown` seconds after a refused one."""

    def __init__(self, cooldown: float, secrets: tuple[str, ...]) -> None:
        self._cooldown = cooldown
        self._secrets = secrets
        self._lock = asyncio.Lock()
        self._refused: MailError | None = None
        self._until = 0.0

    def check(self) -> None:
        """Raise the last refusal (a `PermanentMailError`) while cooling down after it."""
        remaining = self._until - asyncio.get_running_loop().time()
        if self._refused is not None and remaining > 0:
            raise PermanentMailError(
                f"{self._refused} (no new login for {remaining:.0f} s after a refused one: MAIL_LOGIN_COOLDOWN)",
                reply_code=self._refused.reply_code,
                failure="auth",
            )

    @contextlib.asynccontextmanager
    async def attempt(self, action: str) -> AsyncIterator[None]:
        """Wrap one login (`action`, e.g. "login to host:587"): `check`, then start a cool-down on a refusal."""
        async with self._lock:
            self.check()
            loop = asyncio.get_running_loop()
            try:
                yield
            except aiosmtplib.SMTPAuthenticationError as error:
                if error.code >= 500 and self._cooldown > 0:
                    self._refused = classify(error, action, self._secrets)
                    self._until = loop.time() + self._cooldown
                raise
            self._refused = None


class PasswordLogin:
    """The `Login` of MAIL_AUTH=password: `login_once` as `username`, through a `LoginGuard`."""

    def __init__(self, username: str, password: str, guard: LoginGuard) -> None:
        self._username = username
        self._password = password
        self._guard = guard

    def check(self) -> None:
        """Raise while cooling down after a refused login."""
        self._guard.check()

    async def __call__(self, smtp: aiosmtplib.SMTP, action: str) -> None:
        async with self._guard.attempt(action):
            await login_once(smtp, self._username, self._password)
