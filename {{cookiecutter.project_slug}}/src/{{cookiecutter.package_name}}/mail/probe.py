"""The probe behind check-mail and /health/mail: connect, TLS and login, never send.

`probe()` looks MAIL_SERVER up, then opens a session exactly as the `Mailer` does
(`session.open_session`, on aiosmtplib: the same EHLO name, TLS and login methods) and stops
there: it never sends MAIL FROM. Each step is bounded by MAIL_TIMEOUT, as when sending (QUIT takes
at most half a second more). Each failure becomes one `Diagnosis`, and the password never appears
in one, even if the server echoes it. Raw second connections (and `sniff`'s) only tell a wrong
port or TLS mode, a silent host or a dropped connection apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import aiosmtplib

from .advice import login_advice
from .diagnosis import Diagnosis, Problem, settings_diagnosis
from .errors import printable, redact, wants_oauth
from .oauth import TokenError
from .session import Progress, open_session, smtp_client
from .settings import MailSettings, SettingsError, load_settings, security_warnings
from .sniff import ImplicitTlsPortError

__all__ = ["check_mail", "probe"]

T = TypeVar("T")

CLOSE_TIMEOUT = 0.5
RAW_WAIT = 1.0
"""Seconds a diagnostic second connection waits at most (a plain greeting; a TCP connect: MAIL_TIMEOUT / 2)."""


class _Found(Exception):  # noqa: N818 - control flow, not an error
    """Ends the probe with a diagnosis."""

    def __init__(self, problem: Problem, message: str, fix: str) -> None:
        super().__init__(problem.value)
        self.problem, self.message, self.fix = problem, message, fix


async def probe(settings: MailSettings) -> Diagnosis:
    """Connect, negotiate TLS and log in (never send); diagnose the first step that fails."""
    started = time.monotonic()
    where = f"{settings.server}:{settings.port}"
    smtp = smtp_client(settings)
    progress = Progress(where)
    try:
        await _resolve(settings)
        await open_session(smtp, settings, progress)
        found = _Found(Problem.OK, _success(settings, where), "nothing to fix")
    except Exception as error:  # every failure becomes a diagnosis
        found = await _Diagnoser(settings, smtp, progress).diagnose(error)
    finally:
        await _close(smtp)
    secrets = settings.secret_forms()
    return Diagnosis(
        found.problem,
        redact(found.message, secrets),
        redact(found.fix, secrets),
        settings.server,
        settings.port,
        time.monotonic() - started,
    )


def check_mail() -> Diagnosis:
    """check-mail without the printing: `probe` with MailSettings from the environment.

    Settings that do not load are a `SETTINGS_INVALID` diagnosis; `render_diagnosis` formats the
    result, and its `warnings` (MAIL_VALIDATE_CERTS=false...) go to stderr.
    """
    try:
        settings = load_settings(MailSettings)
    except SettingsError as error:
        return settings_diagnosis(error)
    diagnosis = asyncio.run(probe(settings))
    return dataclasses.replace(diagnosis, warnings=tuple(security_warnings(settings)))


def _success(settings: MailSettings, where: str) -> str:
    tls = "implicit TLS" if settings.ssl_tls else "STARTTLS" if settings.starttls else "no TLS"
    login = f"login as {_username(settings)}" if settings.use_credentials else "no login"
    return f"{where} accepted the connection, {tls} and {login}"


def _username(settings: MailSettings) -> str:
    """MAIL_USERNAME as shown: not at all when it is the password too."""
    if redact(settings.username, settings.secret_forms()) != settings.username:
        return "(not shown: it contains MAIL_PASSWORD)"
    return settings.username


async def _close(smtp: aiosmtplib.SMTP) -> None:
    """QUIT politely after a dialogue that is still up (a courtesy, bounded), then drop the socket."""
    if smtp.is_connected:
        with contextlib.suppress(Exception):
            await smtp.quit(timeout=CLOSE_TIMEOUT)
    with contextlib.suppress(Exception):
        smtp.close()
    await asyncio.sleep(0)  # let the loop release the socket


class _Diagnoser:
    """Turns what `open_session` raised, and the step it was at, into a `_Found`."""

    def __init__(self, settings: MailSettings, smtp: aiosmtplib.SMTP, progress: Progress) -> None:
        self.settings, self.smtp, self.step = settings, smtp, progress.step
        self.where = progress.where
        self.secrets = settings.secret_forms()

    def text(self, text: str, limit: int = 200) -> str:
        """Server text made safe for one terminal line: secrets redacted first, then cleaned and cut."""
        cleaned = printable(redact(text, self.secrets))
        return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."

    def reply(self, error: aiosmtplib.SMTPResponseException) -> str:
        return self.text(f"{error.code} {error.message}")

    @property
    def command(self) -> str:
        """The command a failed step was waiting on."""
        return {"connect": "the greeting", "ehlo": "EHLO", "starttls": "STARTTLS", "login": "AUTH"}[self.step]

    async def diagnose(self, error: Exception) -> _Found:
        if isinstance(error, _Found):
            return error
        if isinstance(error, ImplicitTlsPortError):
            mode = "MAIL_STARTTLS=true" if self.settings.starttls else "a connection without TLS"
            return _Found(
                Problem.IMPLICIT_TLS_ON_STARTTLS_PORT,
                f"{self.where} speaks TLS from the first byte (implicit TLS), "
                f"but {mode} expects a plain SMTP greeting",
                "set MAIL_SSL_TLS=true and MAIL_STARTTLS=false for this port, "
                "or use the STARTTLS port (usually 587) with MAIL_STARTTLS=true",
            )
        if isinstance(error, TokenError):
            return _Found(Problem(error.failure.value), error.reason, error.fix)
        if self.step == "connect" and isinstance(error, aiosmtplib.SMTPConnectTimeoutError):
            return await self.connect_timeout(error)
        if self.step == "connect" and isinstance(error, aiosmtplib.SMTPConnectResponseError):
            return _Found(
                Problem.SERVER_REJECTED,
                f"{self.where} refused the session: {self.reply(error)}",
                "the server does not accept this machine (IP allow-list, blocklist or connection limit): "
                "ask its administrator",
            )
        if self.step == "connect" and isinstance(error, aiosmtplib.SMTPConnectError):
            return await self.connect_failed(error)
        cause = error.__cause__ if isinstance(error, aiosmtplib.SMTPException) else error
        if isinstance(cause, ssl.SSLCertVerificationError):
            return self.certificate_problem(cause)
        if isinstance(cause, ssl.SSLError):
            return self.tls_failure(cause)
        if isinstance(error, aiosmtplib.SMTPTimeoutError):
            return self.stalled()
        if isinstance(error, aiosmtplib.SMTPServerDisconnected):
            return self.closed()
        if isinstance(error, aiosmtplib.SMTPResponseException) and error.code < 0:
            return self.not_smtp(error.message)
        if isinstance(error, aiosmtplib.SMTPAuthenticationError):
            return self.login_refused(error)
        if isinstance(error, aiosmtplib.SMTPResponseException):
            return self.unexpected(error)
        if isinstance(error, aiosmtplib.SMTPException) and self.step == "starttls":
            return _Found(
                Problem.STARTTLS_NOT_OFFERED,
                f"{self.where} does not offer STARTTLS, but MAIL_STARTTLS=true",
                "use the port that offers TLS (587 with MAIL_STARTTLS=true, or 465 with MAIL_SSL_TLS=true); "
                "a network filter may also be stripping STARTTLS",
            )
        if isinstance(error, aiosmtplib.SMTPException) and self.step == "login":
            return self.login_not_offered()
        return _Found(
            Problem.UNEXPECTED_REPLY,
            f"{self.where}: {self.command} failed ({self.text(f'{type(error).__name__}: {error}')})",
            "look the error up in the server's documentation; retry later if it is temporary",
        )

    # -- connecting ------------------------------------------------------------------------------

    async def connect_failed(self, error: aiosmtplib.SMTPConnectError) -> _Found:
        cause = error.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return self.certificate_problem(cause)
        if isinstance(cause, ssl.SSLError | ConnectionResetError) and self.settings.ssl_tls:
            greeting = await _plain_greeting(self.settings)
            if greeting:
                return _Found(
                    Problem.STARTTLS_ON_IMPLICIT_TLS_PORT,
                    f"{self.where} speaks plain SMTP ({self.text(greeting, 80)!r}), "
                    "but MAIL_SSL_TLS=true expects TLS from the first byte",
                    "set MAIL_STARTTLS=true and MAIL_SSL_TLS=false for this port, "
                    "or use the implicit-TLS port (usually 465)",
                )
            return self.tls_failure(cause)
        if isinstance(cause, aiosmtplib.SMTPServerDisconnected):
            return self.closed()
        if isinstance(cause, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(cause):
            return _Found(
                Problem.CONNECTION_REFUSED,
                f"{self.where} refused the connection: nothing listens on that port",
                "check MAIL_PORT (usually 587 for STARTTLS, 465 for implicit TLS) and that the server runs",
            )
        reason = getattr(cause, "strerror", None) or cause or error
        return _Found(
            Problem.CONNECT_FAILED,
            f"cannot connect to {self.where}: {self.text(str(reason))}",
            "check the network route from this machine to MAIL_SERVER (proxy, VPN, firewall)",
        )

    async def connect_timeout(self, error: aiosmtplib.SMTPConnectTimeoutError) -> _Found:
        """No greeting (or TLS handshake) in time, or no connection at all: a raw connect tells them apart."""
        seconds = f"{self.settings.timeout:g} s"
        connected = isinstance(error.__cause__, aiosmtplib.SMTPTimeoutError)  # the greeting timed out
        if not connected:
            connected = await _tcp_connects(self.settings, min(RAW_WAIT, self.settings.timeout / 2))
        if not connected:
            return _Found(
                Problem.CONNECT_TIMEOUT,
                f"{self.where} did not accept the connection within {seconds}",
                "a firewall is probably dropping it (many hosts block outgoing ports 25, 465 and 587): "
                "allow the port outbound, or try the provider's other port",
            )
        sent = "no answer to the TLS handshake" if self.settings.ssl_tls else "no SMTP greeting"
        return _Found(
            Problem.NO_GREETING,
            f"{self.where} accepted the connection but sent {sent} within {seconds}",
            "check that MAIL_PORT is the server's SMTP port; a proxy or firewall may be holding "
            "the connection open",
        )

    # -- TLS -------------------------------------------------------------------------------------

    def certificate_problem(self, error: ssl.SSLCertVerificationError) -> _Found:
        reason = self.text(str(error.verify_message or error.reason))
        if error.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            return _Found(
                Problem.HOSTNAME_MISMATCH,
                f"the certificate of {self.where} does not cover the name {self.settings.server} ({reason})",
                "set MAIL_SERVER to a name the certificate covers: the provider's documented SMTP host name, "
                "not an IP address or an alias",
            )
        if error.verify_code in (9, 10):  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
            return _Found(
                Problem.CERTIFICATE_EXPIRED,
                f"the certificate of {self.where} is outside its validity period ({reason})",
                "the server's certificate must be renewed (tell its administrator); check the clock here",
            )
        return _Found(
            Problem.CERTIFICATE_UNTRUSTED,
            f"the certificate of {self.where} is not trusted ({reason})",
            "if the server uses a private CA, save its CA certificate as PEM and set MAIL_CERT_BUNDLE to "
            "that file (MAIL_VALIDATE_CERTS=false only for local testing)",
        )

    def tls_failure(self, error: BaseException) -> _Found:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or type(error).__name__
        return _Found(
            Problem.TLS_FAILED,
            f"the TLS handshake with {self.where} failed ({self.text(str(reason))})",
            "check that MAIL_SSL_TLS/MAIL_STARTTLS match the port; the server may need a TLS version or "
            "cipher this Python's OpenSSL does not offer",
        )

    # -- login -----------------------------------------------------------------------------------

    def login_not_offered(self) -> _Found:
        offered = " ".join(method.upper() for method in self.smtp.server_auth_methods)
        if not offered:
            if not self.settings.encrypted and self.smtp.supports_extension("starttls"):
                return self.auth_requires_tls()
            return _Found(
                Problem.AUTH_NOT_OFFERED,
                f"{self.where} does not offer login (AUTH) on this port",
                "use the submission port that accepts logins (587 or 465), "
                "or MAIL_USE_CREDENTIALS=false if this server relays without login",
            )
        if self.settings.auth == "xoauth2":
            return _Found(
                Problem.AUTH_NOT_OFFERED,
                f"{self.where} offers only login mechanisms {offered}, not XOAUTH2",
                "use the provider's SMTP host (smtp.office365.com, smtp.gmail.com), or MAIL_AUTH=password",
            )
        supported = ", ".join(aiosmtplib.SMTP.AUTH_METHODS).upper()
        return _Found(
            Problem.AUTH_NOT_OFFERED,
            f"{self.where} offers only login mechanisms {offered}, none of {supported}",
            "use a server or port that accepts password logins, "
            "or MAIL_USE_CREDENTIALS=false if this server relays without login",
        )

    def login_refused(self, error: aiosmtplib.SMTPAuthenticationError) -> _Found:
        text = self.reply(error)
        if error.code in (530, 538):
            return self.auth_requires_tls()
        if error.code in (534, 535, 550) and wants_oauth(text):
            return _Found(
                Problem.OAUTH_REQUIRED,
                f"{self.where} refused the password login because it wants OAuth2: {text}",
                "set MAIL_AUTH=xoauth2 and the MAIL_OAUTH_* variables (README: Signing in with OAuth2)",
            )
        if error.code in (534, 535) and self.settings.auth == "password":
            return _Found(
                Problem.AUTH_FAILED,
                f"{self.where} rejected the login of MAIL_USERNAME={_username(self.settings)}: {text}",
                login_advice(self.settings.server, self.settings.username),
            )
        return self.unexpected(error)

    def auth_requires_tls(self) -> _Found:
        return _Found(
            Problem.AUTH_REQUIRES_TLS,
            f"{self.where} offers login only after TLS, but the connection is not encrypted",
            "set MAIL_STARTTLS=true (or MAIL_SSL_TLS=true on an implicit-TLS port)",
        )

    # -- other failures --------------------------------------------------------------------------

    def stalled(self) -> _Found:
        return _Found(
            Problem.SERVER_TIMEOUT,
            f"{self.where} stopped answering during {self.command} (nothing within {self.settings.timeout:g} s)",
            "the server or a middlebox is stalling: try again later, or raise MAIL_TIMEOUT",
        )

    def closed(self) -> _Found:
        command = self.command
        during = "waiting for the greeting" if command == "the greeting" else f"answering {command}"
        return _Found(
            Problem.CONNECTION_CLOSED,
            f"{self.where} closed the connection while {during}",
            "the server may limit connections or block this address; check MAIL_PORT and the server's logs",
        )

    def not_smtp(self, sample: str) -> _Found:
        return _Found(
            Problem.NOT_SMTP,
            f"{self.where} answered, but not in SMTP: {self.text(sample, 80)!r}",
            "MAIL_PORT points at another kind of service: use the SMTP submission port (587 or 465)",
        )

    def unexpected(self, error: aiosmtplib.SMTPResponseException) -> _Found:
        kind = "a temporary failure" if 400 <= error.code < 500 else "an error"
        return _Found(
            Problem.UNEXPECTED_REPLY,
            f"{self.where} answered {self.command} with {kind}: {self.reply(error)}",
            "retry later if the reply starts with 4; otherwise look it up in the server's documentation",
        )


# -- raw second connections, for the diagnoses only --------------------------------------------------


async def _in_daemon_thread(function: Callable[[], T], name: str) -> T:
    """`function()`, run in a daemon thread.

    `asyncio.to_thread` would use the default executor, which `asyncio.run` waits for at exit:
    a hanging DNS server would then hold `check-mail` past its time bound.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = function()
        except Exception as error:  # handed to the awaiting coroutine
            outcome = functools.partial(future.set_exception, error)
        else:
            outcome = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


async def _addresses(settings: MailSettings) -> list[str]:
    """The addresses of MAIL_SERVER, looked up in a daemon thread (the caller bounds the time)."""

    def lookup() -> list[str]:
        infos = socket.getaddrinfo(settings.server, settings.port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    return await _in_daemon_thread(lookup, "mail-probe-dns")


async def _resolve(settings: MailSettings) -> None:
    """Diagnose a MAIL_SERVER that does not resolve within MAIL_TIMEOUT before connecting.

    aiosmtplib resolves in the default executor, which `asyncio.run` waits for: a resolver that
    hangs would hold `check-mail` past its bound. Looked up here first, it never reaches aiosmtplib.
    """
    try:
        async with asyncio.timeout(settings.timeout):
            await _addresses(settings)
    except TimeoutError:
        raise _Found(
            Problem.DNS_FAILURE,
            f"MAIL_SERVER={settings.server} did not resolve within {settings.timeout:g} s",
            "this machine's DNS server does not answer: check /etc/resolv.conf or the network",
        ) from None
    except OSError as error:
        raise _Found(
            Problem.DNS_FAILURE,
            f"MAIL_SERVER={settings.server} does not resolve ({error.strerror or error})",
            "check the spelling of MAIL_SERVER (your provider's SMTP host name) and this machine's DNS",
        ) from None


async def _open_raw(
    settings: MailSettings, wait: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A plain TCP connection to MAIL_SERVER within `wait` seconds, else None."""
    with contextlib.suppress(OSError):  # TimeoutError too
        async with asyncio.timeout(wait):
            for address in await _addresses(settings):
                with contextlib.suppress(ConnectionError):  # the next address may answer
                    return await asyncio.open_connection(address, settings.port)
    return None


async def _tcp_connects(settings: MailSettings, wait: float) -> bool:
    """Whether MAIL_SERVER accepts a TCP connection on MAIL_PORT within `wait` seconds."""
    opened = await _open_raw(settings, wait)
    if opened is not None:
        await _abort(opened[1])
    return opened is not None


async def _plain_greeting(settings: MailSettings) -> str:
    """The first line a fresh connection receives if the port speaks plain SMTP, else ''."""
    opened = await _open_raw(settings, RAW_WAIT)
    if opened is None:
        return ""
    reader, writer = opened
    try:
        async with asyncio.timeout(RAW_WAIT):
            line = (await reader.readline()).decode("ascii", "replace").strip()
    except (OSError, ValueError):  # TimeoutError is an OSError: nothing came
        return ""
    finally:
        await _abort(writer)
    return line if line[:3].isdigit() else ""


async def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once, and let the loop release its socket before returning."""
    # Aborting a TLS transport that already closed raises AttributeError on Python 3.11.
    with contextlib.suppress(AttributeError, OSError):
        writer.transport.abort()
    await asyncio.sleep(0)
