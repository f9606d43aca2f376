"""The probe's last step: will the server take mail from MAIL_FROM? `MAIL FROM`, `RCPT TO`, then `RSET`; never DATA.

A server may accept the login and still refuse every message: Postfix answers `RCPT` with
`554 5.7.1 Client host rejected` when it relays only for logged-in clients, and `553 5.7.1 ...
Sender address rejected: not owned by user` when the login may not send as MAIL_FROM
(`reject_sender_login_mismatch`; like every sender restriction, often only at `RCPT`). The probe
goes as far as a message would without sending one.

The recipient is MAIL_FROM itself: the one address the operator is known to own, so even a server
that acted on `RCPT` alone could reach nobody else; its domain exists (no "domain not found"); and
providers that accept only verified addresses (SES's sandbox) accept it. A server that hosts
MAIL_FROM's domain may take that recipient and still refuse to relay to other domains without a
login, so a server offering AUTH to a client that does not log in is worth a warning.
"""

from __future__ import annotations

import contextlib
import re

import aiosmtplib

from ..core.errors import printable, redact
from ..signin.settings import SigninSettings
from .diagnosis import Found, Problem
from .login import shown_username

__all__ = ["RSET_TIMEOUT", "check_sender"]

RSET_TIMEOUT = 0.5
"""Seconds the closing RSET may take (a courtesy: the finding is made by then)."""

_NOT_OWNED = re.compile(r"not owned|send ?as|5\.7\.60", re.IGNORECASE)
_SENDER_REJECTED = re.compile(r"sender address rejected", re.IGNORECASE)
_NO_SUCH_ADDRESS = re.compile(r"[245]\.1\.[12]\b")
"""RFC 3463: a bad destination mailbox or system; the client was let through, MAIL_FROM is not a mailbox there."""
_WANTS_LOGIN = re.compile(r"auth\w* (is )?required|must authenticate|not authenticated", re.IGNORECASE)


async def check_sender(smtp: aiosmtplib.SMTP, settings: SigninSettings) -> tuple[str, ...]:
    """`MAIL FROM:<MAIL_FROM>`, `RCPT TO:<MAIL_FROM>` and `RSET` on the open session; returns the warnings.

    Raises `Found` when the server refuses either, stalls or hangs up.
    """
    sender = str(settings.from_address)
    utf8 = not sender.isascii()
    if utf8 and not smtp.supports_extension("smtputf8"):
        raise Found(
            Problem.SENDER_REFUSED,
            f"{settings.where} does not offer SMTPUTF8, which MAIL_FROM={sender} needs",
            "use an ASCII MAIL_FROM, or a server that offers SMTPUTF8",
        )
    encoding = "utf-8" if utf8 else "ascii"
    command = "MAIL FROM"
    warnings: list[str] = []
    try:
        await smtp.mail(sender, options=["SMTPUTF8"] if utf8 else [], encoding=encoding)
        command = "RCPT TO"
        await smtp.rcpt(sender, encoding=encoding)
    except aiosmtplib.SMTPResponseException as error:
        reply = _reply(error, settings)
        if command == "RCPT TO" and _NO_SUCH_ADDRESS.match(error.message):
            warnings.append(
                f"{settings.where} does not take MAIL_FROM={sender} as a recipient ({reply}): it let this client "
                "through, but replies and bounces to MAIL_FROM would be refused"
            )
        else:
            raise _refusal(smtp, settings, command, error.code, reply) from None
    except aiosmtplib.SMTPTimeoutError:
        raise Found(
            Problem.SERVER_TIMEOUT,
            f"{settings.where} stopped answering during {command} (nothing within {settings.timeout:g} s)",
            "the server or a middlebox is stalling: try again later, or raise MAIL_TIMEOUT",
        ) from None
    except aiosmtplib.SMTPServerDisconnected:
        raise Found(
            Problem.CONNECTION_CLOSED,
            f"{settings.where} closed the connection while answering {command}",
            "the server may limit connections or block this address; check the server's logs",
        ) from None
    finally:
        if smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.rset(timeout=min(RSET_TIMEOUT, settings.timeout))
    offered = _offered(smtp)
    if offered and not settings.use_credentials:
        warnings.append(
            f"{settings.where} offers login ({offered}) but MAIL_USE_CREDENTIALS=false: it took MAIL_FROM as a "
            "recipient, but may refuse other domains without a login; if it does, set "
            "MAIL_USE_CREDENTIALS=true with MAIL_USERNAME and MAIL_PASSWORD"
        )
    return tuple(warnings)


def _refusal(smtp: aiosmtplib.SMTP, settings: SigninSettings, command: str, code: int, reply: str) -> Found:
    """The diagnosis of a refused `MAIL FROM` or `RCPT TO` (`reply` made safe to show)."""
    sender = str(settings.from_address)
    said = f"{settings.where} refused {command} for MAIL_FROM={sender}: {reply}"
    login_fix = "set MAIL_USE_CREDENTIALS=true with MAIL_USERNAME and MAIL_PASSWORD"
    if _NOT_OWNED.search(reply):
        who = f"MAIL_USERNAME={shown_username(settings)}" if settings.use_credentials else "this client"
        return Found(
            Problem.SENDER_NOT_OWNED,
            said,
            f"MAIL_FROM must be an address the login owns or may send as: set MAIL_FROM to an address of {who}, "
            "or have the server's administrator let this login send as MAIL_FROM",
        )
    if not settings.use_credentials and (code == 530 or _WANTS_LOGIN.search(reply)):
        return Found(Problem.SENDER_REFUSED, said, f"the server takes mail only after a login: {login_fix}")
    if command == "MAIL FROM" or _SENDER_REJECTED.search(reply):
        return Found(
            Problem.SENDER_REFUSED,
            said,
            "MAIL_FROM must be an address (and domain) this server accepts as a sender: correct it, or ask the "
            "server's administrator; a reply starting with 4 may clear later",
        )
    if settings.use_credentials:
        fix = (
            "the server refuses to relay for this login: ask its administrator to let logged-in clients send "
            "(Postfix: permit_sasl_authenticated in smtpd_relay_restrictions)"
        )
    elif _offered(smtp):
        fix = f"the server relays only for clients that log in: {login_fix}"
    else:
        fix = (
            "the server does not relay for this machine: have its administrator allow this host (Postfix: "
            "mynetworks), or use the provider's submission port (587) with a login"
        )
    return Found(Problem.RELAY_REFUSED, said, fix)


def _reply(error: aiosmtplib.SMTPResponseException, settings: SigninSettings) -> str:
    """The server's reply, secrets redacted, made safe for one line."""
    text = printable(redact(f"{error.code} {error.message}", settings.secret_forms()))
    return text if len(text) <= 200 else text[:197] + "..."


def _offered(smtp: aiosmtplib.SMTP) -> str:
    """The login mechanisms the server offers ("AUTH PLAIN LOGIN"), or ''."""
    methods = " ".join(method.upper() for method in smtp.server_auth_methods)
    return f"AUTH {methods}" if methods else ""
