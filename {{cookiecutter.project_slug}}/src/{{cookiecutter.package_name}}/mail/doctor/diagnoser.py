"""Turning what failed while opening a session, and the step it was at, into one diagnosis with its fix."""

from __future__ import annotations

import errno
import ssl

import aiosmtplib

from ..core.errors import printable, redact
from ..core.session import Progress
from ..core.sniff import ImplicitTlsPortError
from ..signin.settings import SigninSettings
from ..signin.tokens import TokenError
from .diagnosis import Found, Problem
from .login import login_not_offered, login_refused
from .raw import RAW_WAIT, plain_greeting, tcp_connects

__all__ = ["Diagnoser"]


class Diagnoser:
    """Turns what `open_session` raised, and the step it was at, into a `Found`."""

    def __init__(self, settings: SigninSettings, smtp: aiosmtplib.SMTP, progress: Progress) -> None:
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

    async def diagnose(self, error: Exception) -> Found:
        if isinstance(error, Found):
            return error
        if isinstance(error, ImplicitTlsPortError):
            mode = "MAIL_STARTTLS=true" if self.settings.starttls else "a connection without TLS"
            return Found(
                Problem.IMPLICIT_TLS_ON_STARTTLS_PORT,
                f"{self.where} speaks TLS from the first byte (implicit TLS), "
                f"but {mode} expects a plain SMTP greeting",
                "set MAIL_SSL_TLS=true and MAIL_STARTTLS=false for this port, "
                "or use the STARTTLS port (usually 587) with MAIL_STARTTLS=true",
            )
        if isinstance(error, TokenError):
            return Found(Problem(error.kind.value), error.reason, error.fix)
        if self.step == "connect" and isinstance(error, aiosmtplib.SMTPConnectTimeoutError):
            return await self.connect_timeout(error)
        if self.step == "connect" and isinstance(error, aiosmtplib.SMTPConnectResponseError):
            return Found(
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
            return login_refused(error.code, self.reply(error), self.settings) or self.unexpected(error)
        if isinstance(error, aiosmtplib.SMTPResponseException):
            return self.unexpected(error)
        if isinstance(error, aiosmtplib.SMTPException) and self.step == "starttls":
            return Found(
                Problem.STARTTLS_NOT_OFFERED,
                f"{self.where} does not offer STARTTLS, but MAIL_STARTTLS=true",
                "use the port that offers TLS (587 with MAIL_STARTTLS=true, or 465 with MAIL_SSL_TLS=true); "
                "a network filter may also be stripping STARTTLS",
            )
        if isinstance(error, aiosmtplib.SMTPException) and self.step == "login":
            return login_not_offered(self.smtp, self.settings)
        return Found(
            Problem.UNEXPECTED_REPLY,
            f"{self.where}: {self.command} failed ({self.text(f'{type(error).__name__}: {error}')})",
            "look the error up in the server's documentation; retry later if it is temporary",
        )

    # -- connecting ------------------------------------------------------------------------------

    async def connect_failed(self, error: aiosmtplib.SMTPConnectError) -> Found:
        cause = error.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return self.certificate_problem(cause)
        if isinstance(cause, ssl.SSLError | ConnectionResetError) and self.settings.ssl_tls:
            greeting = await plain_greeting(self.settings)
            if greeting:
                return Found(
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
            return Found(
                Problem.CONNECTION_REFUSED,
                f"{self.where} refused the connection: nothing listens on that port",
                "check MAIL_PORT (usually 587 for STARTTLS, 465 for implicit TLS) and that the server runs",
            )
        reason = getattr(cause, "strerror", None) or cause or error
        return Found(
            Problem.CONNECT_FAILED,
            f"cannot connect to {self.where}: {self.text(str(reason))}",
            "check the network route from this machine to MAIL_SERVER (proxy, VPN, firewall)",
        )

    async def connect_timeout(self, error: aiosmtplib.SMTPConnectTimeoutError) -> Found:
        """No greeting (or TLS handshake) in time, or no connection at all: a raw connect tells them apart."""
        seconds = f"{self.settings.timeout:g} s"
        connected = isinstance(error.__cause__, aiosmtplib.SMTPTimeoutError)  # the greeting timed out
        if not connected:
            connected = await tcp_connects(self.settings, min(RAW_WAIT, self.settings.timeout / 2))
        if not connected:
            return Found(
                Problem.CONNECT_TIMEOUT,
                f"{self.where} did not accept the connection within {seconds}",
                "a firewall is probably dropping it (many hosts block outgoing ports 25, 465 and 587): "
                "allow the port outbound, or try the provider's other port",
            )
        sent = "no answer to the TLS handshake" if self.settings.ssl_tls else "no SMTP greeting"
        return Found(
            Problem.NO_GREETING,
            f"{self.where} accepted the connection but sent {sent} within {seconds}",
            "check that MAIL_PORT is the server's SMTP port; a proxy or firewall may be holding "
            "the connection open",
        )

    # -- TLS -------------------------------------------------------------------------------------

    def certificate_problem(self, error: ssl.SSLCertVerificationError) -> Found:
        reason = self.text(str(error.verify_message or error.reason))
        if error.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            return Found(
                Problem.HOSTNAME_MISMATCH,
                f"the certificate of {self.where} does not cover the name {self.settings.server} ({reason})",
                "set MAIL_SERVER to a name the certificate covers: the provider's documented SMTP host name, "
                "not an IP address or an alias",
            )
        if error.verify_code in (9, 10):  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
            return Found(
                Problem.CERTIFICATE_EXPIRED,
                f"the certificate of {self.where} is outside its validity period ({reason})",
                "the server's certificate must be renewed (tell its administrator); check the clock here",
            )
        return Found(
            Problem.CERTIFICATE_UNTRUSTED,
            f"the certificate of {self.where} is not trusted ({reason})",
            "if the server uses a private CA, save its CA certificate as PEM and set MAIL_CERT_BUNDLE to "
            "that file (MAIL_VALIDATE_CERTS=false only for local testing)",
        )

    def tls_failure(self, error: BaseException) -> Found:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or type(error).__name__
        return Found(
            Problem.TLS_FAILED,
            f"the TLS handshake with {self.where} failed ({self.text(str(reason))})",
            "check that MAIL_SSL_TLS/MAIL_STARTTLS match the port; the server may need a TLS version or "
            "cipher this Python's OpenSSL does not offer",
        )

    # -- other failures --------------------------------------------------------------------------

    def stalled(self) -> Found:
        return Found(
            Problem.SERVER_TIMEOUT,
            f"{self.where} stopped answering during {self.command} (nothing within {self.settings.timeout:g} s)",
            "the server or a middlebox is stalling: try again later, or raise MAIL_TIMEOUT",
        )

    def closed(self) -> Found:
        command = self.command
        during = "waiting for the greeting" if command == "the greeting" else f"answering {command}"
        return Found(
            Problem.CONNECTION_CLOSED,
            f"{self.where} closed the connection while {during}",
            "the server may limit connections or block this address; check MAIL_PORT and the server's logs",
        )

    def not_smtp(self, sample: str) -> Found:
        return Found(
            Problem.NOT_SMTP,
            f"{self.where} answered, but not in SMTP: {self.text(sample, 80)!r}",
            "MAIL_PORT points at another kind of service: use the SMTP submission port (587 or 465)",
        )

    def unexpected(self, error: aiosmtplib.SMTPResponseException) -> Found:
        kind = "a temporary failure" if 400 <= error.code < 500 else "an error"
        return Found(
            Problem.UNEXPECTED_REPLY,
            f"{self.where} answered {self.command} with {kind}: {self.reply(error)}",
            "retry later if the reply starts with 4; otherwise look it up in the server's documentation",
        )
