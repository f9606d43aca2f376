"""Delivery errors, and the one classifier that turns whatever failed into one of them.

Transient errors are worth retrying, permanent ones are not. `classify` turns what aiosmtplib,
asyncio or the socket layer raised into one, with a one-line message that says what failed, the
server's reply and what to change, and a `failure` class fit for a metric label (`FAILURE_CLASSES`).
The original exception stays attached as `__cause__`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Iterator

import aiosmtplib

__all__ = [
    "FAILURE_CLASSES",
    "DeliveryOutcomeUnknownError",
    "MailError",
    "PermanentMailError",
    "TransientMailError",
    "classify",
    "is_disconnect",
    "printable",
    "redact",
]

REDACTED = "***"

FAILURE_CLASSES = ("4xx", "5xx", "auth", "tls", "timeout", "connect", "no_reply", "other")
"""Every value of `MailError.failure`: the server's reply class, or the step that failed."""

_CONNECT_HINT = "check MAIL_SERVER and MAIL_PORT, and that the server is reachable"
_TIMEOUT_HINT = "the server did not answer within MAIL_TIMEOUT seconds"
_LOGIN_HINT = "check MAIL_USERNAME and MAIL_PASSWORD"
_OAUTH_HINT = "the server wants OAuth2: set MAIL_AUTH=xoauth2 and the MAIL_OAUTH_* variables"
_CERT_HINT = (
    "set MAIL_CERT_BUNDLE to the CA file that signed the server certificate, "
    "and check that MAIL_SERVER is the name on the certificate"
)
_NO_AUTH_HINT = "set MAIL_USE_CREDENTIALS=false if the server takes no login"
_TLS_HINT = "check MAIL_PORT against the TLS mode (MAIL_STARTTLS=true for 587, MAIL_SSL_TLS=true for 465)"


class MailError(Exception):
    """Sending failed. The message is one line and never contains a secret.

    `failure` is one of FAILURE_CLASSES; `reply_code` the server's reply code, when it answered.
    """

    transient: bool = False
    failure: str = "other"

    def __init__(self, message: str, *, reply_code: int | None = None, failure: str | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code
        if failure is not None:
            self.failure = failure
        elif reply_code is not None and 400 <= reply_code < 600:
            self.failure = f"{reply_code // 100}xx"


class TransientMailError(MailError):
    """A failure that may pass: lost connection, timeout, 4xx reply. Retried."""

    transient = True


class PermanentMailError(MailError):
    """A failure that will repeat: 5xx reply, refused login, bad TLS or settings. Not retried."""

    transient = False


class DeliveryOutcomeUnknownError(PermanentMailError):
    """The message was sent but the server's reply to it never came: it may have been delivered, or not.

    The `Mailer` does not send it again (a retry could deliver it twice); its caller decides, and a
    caller that does should keep the Message-ID, so that a duplicate can be recognised.
    """

    failure = "no_reply"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each non-empty secret replaced by "***"."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def printable(text: str) -> str:
    """`text` on one line, each control character (a server reply may carry any) made a space."""
    return " ".join("".join(char if char.isprintable() else " " for char in text).split())


def wants_oauth(reply: str) -> bool:
    """True when a refused password login says the server takes only OAuth2 (Microsoft 5.7.139, 5.7.30)."""
    return "5.7.139" in reply or "5.7.30" in reply or "basic authentication" in reply.lower()


def classify(
    error: BaseException, action: str = "sending", secrets: Iterable[str] = (), *, connected: bool = False
) -> MailError:
    """The `MailError` for `error`, raised while doing `action` (e.g. "connect to host:587").

    `connected`: the session was up (connected, TLS and login done), so a TLS-layer failure is a
    lost connection, not a handshake problem. Each of `secrets` is replaced by "***" in the
    message, before anything else touches the text. The result's `__cause__` is `error`.
    Never raises.
    """
    if isinstance(error, MailError):
        return error
    try:
        transient, reply_code, detail = _describe(error, connected)
    except Exception:  # an exception with unexpected attributes: describe it by its type alone
        transient, reply_code, detail = False, None, type(error).__name__
    message = printable(redact(f"{action} failed: {detail}", secrets))
    kind = TransientMailError if transient else PermanentMailError
    result = kind(message, reply_code=reply_code, failure=failure_of(error))
    result.__cause__ = error
    return result


def failure_of(error: BaseException) -> str:
    """What `error` (as aiosmtplib, asyncio or the socket layer raised it) was: one of FAILURE_CLASSES."""
    causes = list(causes_of(error))
    known = next((cause for cause in causes if isinstance(cause, MailError)), None)
    if known is not None:
        return known.failure
    if any(isinstance(cause, aiosmtplib.SMTPAuthenticationError) for cause in causes):
        return "auth"
    if any(isinstance(cause, ssl.SSLError) for cause in causes):
        return "tls"
    code = getattr(error, "code", None)
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):  # every recipient refused: the worst reply
        code = max((refusal.code for refusal in error.recipients), default=None)
    if isinstance(code, int) and 400 <= code < 600:
        return f"{code // 100}xx"
    if any(isinstance(cause, TimeoutError) for cause in causes):
        return "timeout"
    if any(isinstance(cause, OSError) for cause in causes):
        return "connect"
    return "other"


def _describe(error: BaseException, connected: bool) -> tuple[bool, int | None, str]:
    """(transient, reply code, detail with a hint) for `error`."""
    tls_error = next((cause for cause in causes_of(error) if isinstance(cause, ssl.SSLError)), None)
    if isinstance(tls_error, ssl.SSLCertVerificationError):
        reason = (
            getattr(tls_error, "verify_message", None)
            or getattr(tls_error, "reason", None)
            or "verification failed"
        )
        return False, None, f"TLS certificate not trusted ({reason}): {_CERT_HINT}"
    if tls_error is not None:
        reason = getattr(tls_error, "reason", None) or _text(tls_error) or type(tls_error).__name__
        if connected:
            return True, None, f"the TLS connection was lost ({reason})"
        return False, None, f"TLS handshake failed ({reason}): {_TLS_HINT}"
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in error.recipients]
        refusals = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in error.recipients)
        permanent = [code for code in codes if code >= 500]
        code = permanent[0] if permanent else (codes[0] if codes else None)
        return not permanent, code, f"every recipient was refused: {refusals}"
    if isinstance(error, aiosmtplib.SMTPAuthenticationError) and wants_oauth(error.message):
        return False, error.code, f"server replied {error.code} {error.message}: {_OAUTH_HINT}"
    if isinstance(error, aiosmtplib.SMTPResponseException):
        hint = f": {_LOGIN_HINT}" if isinstance(error, aiosmtplib.SMTPAuthenticationError) else ""
        return 400 <= error.code < 500, error.code, f"server replied {error.code} {error.message}{hint}"
    if isinstance(error, TimeoutError):
        return True, None, f"{_text(error) or 'timed out'}: {_TIMEOUT_HINT}"
    if isinstance(error, OSError):
        return True, None, f"{_os_text(error)}: {_CONNECT_HINT}"
    if isinstance(error, aiosmtplib.SMTPException):
        text = _text(error)
        hint = _TLS_HINT if "TLS" in text else _NO_AUTH_HINT if "AUTH" in text else "check the settings"
        return False, None, f"{text}: {hint}"
    if isinstance(error, ValueError):
        return False, None, _text(error)
    return False, None, f"{type(error).__name__}: {_text(error)}"


def is_disconnect(error: BaseException) -> bool:
    """True when the server closed the session (lost connection or "421 closing")."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code == 421
    return isinstance(error, aiosmtplib.SMTPServerDisconnected)


def causes_of(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from (`raise ... from`), newest first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _text(error: BaseException) -> str:
    message = getattr(error, "message", None)
    return str(message if isinstance(message, str) else error).rstrip(".")


def _os_text(error: BaseException) -> str:
    """The operating system's reason ("Connection refused") when there is one."""
    for cause in causes_of(error):
        if isinstance(cause, OSError) and cause.errno is not None:
            return os.strerror(cause.errno).lower()
    return _text(error) or type(error).__name__
