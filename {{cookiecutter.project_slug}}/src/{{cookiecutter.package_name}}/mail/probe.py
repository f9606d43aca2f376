"""The probe behind check-mail and /health/mail: connect, TLS and login, never send.

`probe()` walks the same path as sending (connect, greeting, EHLO, STARTTLS or implicit
TLS, AUTH) and stops there: it never sends MAIL FROM. It says EHLO with the Mailer's name
and logs in with the Mailer's methods (CRAM-MD5, PLAIN, LOGIN). Each failure becomes one
`Diagnosis`. Each step is bounded by MAIL_TIMEOUT, as when sending (closing takes at most
half a second more), and the password never appears in a diagnosis, even if the server echoes it.
The raw dialogue (not aiosmtplib) is what lets it tell a wrong port or TLS mode from a silent
server: it sniffs for TLS on a second connection when the greeting is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import aiosmtplib
from aiosmtplib.auth import auth_crammd5_verify, auth_login_encode, auth_plain_encode, auth_xoauth2_encode

from .advice import login_advice
from .diagnosis import Diagnosis, Problem
from .errors import printable, redact, wants_oauth
from .oauth import TokenError, fetch_token, smtp_refusal, token_timeout
from .settings import MailSettings
from .sniff import SNIFF_AFTER, speaks_tls

__all__ = ["probe"]

T = TypeVar("T")

SUPPORTED_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
"""The password logins aiosmtplib (so the Mailer) speaks, in the order it prefers them."""
CLOSE_TIMEOUT = 0.5
PLAIN_GREETING_WAIT = 1.0
MAX_REPLY_LINES = 100


class _Found(Exception):  # noqa: N818 - control flow, not an error
    """Ends the probe with a diagnosis."""

    def __init__(self, problem: Problem, message: str, fix: str) -> None:
        super().__init__(problem.value)
        self.problem, self.message, self.fix = problem, message, fix


async def probe(settings: MailSettings) -> Diagnosis:
    """Connect, negotiate TLS and log in (never send); diagnose the first step that fails."""
    started = time.monotonic()
    session = _Session(settings, settings.tls_context)  # a bad MAIL_CERT_BUNDLE stops the settings already
    try:
        await session.run()
        found = _Found(Problem.OK, session.success_message(), "nothing to fix")
    except _Found as diagnosed:
        found = diagnosed
    except TimeoutError:
        found = session.timed_out()
    finally:
        await session.close()
    return Diagnosis(
        found.problem,
        redact(found.message, settings.secret_forms()),
        redact(found.fix, settings.secret_forms()),
        settings.server,
        settings.port,
        time.monotonic() - started,
    )


def _printable(text: str, secrets: tuple[str, ...], limit: int = 200) -> str:
    """Server text made safe for one terminal line: secrets redacted first, then cleaned and cut."""
    cleaned = printable(redact(text, secrets))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


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


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, resolved in a daemon thread."""

    def lookup() -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    return await _in_daemon_thread(lookup, "mail-probe-dns")


class _Session:
    """One probe's SMTP dialogue over asyncio streams."""

    def __init__(self, settings: MailSettings, context: ssl.SSLContext) -> None:
        self.settings = settings
        self.context = context
        self.where = f"{settings.server}:{settings.port}"
        self.step = "resolving MAIL_SERVER"
        self.address = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.extensions: dict[str, str] = {}
        self.last_lines: list[str] = []
        self.finished = False
        self.secrets = settings.secret_forms()

    def bounded(self) -> asyncio.Timeout:
        """The time limit of one step (resolving, connecting, the TLS handshake, one reply): MAIL_TIMEOUT."""
        return asyncio.timeout(self.settings.timeout)

    # -- the dialogue -------------------------------------------------------------------------

    async def run(self) -> None:
        settings = self.settings
        await self.connect()
        if settings.ssl_tls:
            await self.implicit_tls()
            await self.greeting()
        else:
            await self.greeting_or_tls()
        await self.ehlo()
        if settings.starttls:
            await self.starttls()
            await self.ehlo()
        if settings.use_credentials:
            await self.login()
        self.finished = True

    async def connect(self) -> None:
        settings = self.settings
        try:
            async with self.bounded():
                addresses = await _resolve(settings.server, settings.port)
        except TimeoutError:
            raise
        except OSError as error:
            raise _Found(
                Problem.DNS_FAILURE,
                f"MAIL_SERVER={settings.server} does not resolve ({error.strerror or error})",
                "check the spelling of MAIL_SERVER (your provider's SMTP host name) and this machine's DNS",
            ) from None
        self.step = "connecting"
        failure: OSError = OSError("no address")
        for address in addresses:
            try:
                async with self.bounded():
                    self.reader, self.writer = await asyncio.open_connection(address, settings.port)
            except OSError as error:  # TimeoutError too: the next address may answer
                failure = error
            else:
                self.address = address
                return
        if isinstance(failure, ConnectionRefusedError):
            raise _Found(
                Problem.CONNECTION_REFUSED,
                f"{self.where} refused the connection: nothing listens on that port",
                "check MAIL_PORT (usually 587 for STARTTLS, 465 for implicit TLS) and that the server runs",
            )
        if isinstance(failure, TimeoutError):
            raise self.connect_timeout()
        raise _Found(
            Problem.CONNECT_FAILED,
            f"cannot connect to {self.where}: {failure.strerror or failure}",
            "check the network route from this machine to MAIL_SERVER (proxy, VPN, firewall)",
        )

    async def implicit_tls(self) -> None:
        self.step = "the TLS handshake"
        try:
            async with self.bounded():
                await self.stream_writer.start_tls(self.context, server_hostname=self.settings.server)
        except ssl.SSLCertVerificationError as error:
            raise self.certificate_problem(error) from None
        except TimeoutError:
            raise
        except (ssl.SSLError, OSError) as error:
            greeting = await self.plain_greeting()
            if greeting:
                raise _Found(
                    Problem.STARTTLS_ON_IMPLICIT_TLS_PORT,
                    f"{self.where} speaks plain SMTP ({_printable(greeting, self.secrets, 80)!r}), "
                    "but MAIL_SSL_TLS=true expects TLS from the first byte",
                    "set MAIL_STARTTLS=true and MAIL_SSL_TLS=false for this port, "
                    "or use the implicit-TLS port (usually 465)",
                ) from None
            raise self.tls_failure(error) from None

    async def greeting_or_tls(self) -> None:
        """Wait for the greeting; if it is slow, check on a second connection whether the port wants TLS."""
        greeting = asyncio.ensure_future(self.greeting())
        sniff: asyncio.Future[bool] | None = None
        try:
            done, _ = await asyncio.wait({greeting}, timeout=min(SNIFF_AFTER, self.settings.timeout / 4))
            if not done:
                sniff = asyncio.ensure_future(
                    speaks_tls(self.address, self.settings.port, self.settings.server)
                )
                first, _ = await asyncio.wait((greeting, sniff), return_when=asyncio.FIRST_COMPLETED)
                if greeting not in first and sniff.result():
                    mode = "MAIL_STARTTLS=true" if self.settings.starttls else "a connection without TLS"
                    raise _Found(
                        Problem.IMPLICIT_TLS_ON_STARTTLS_PORT,
                        f"{self.where} speaks TLS from the first byte (implicit TLS), "
                        f"but {mode} expects a plain SMTP greeting",
                        "set MAIL_SSL_TLS=true and MAIL_STARTTLS=false for this port, "
                        "or use the STARTTLS port (usually 587) with MAIL_STARTTLS=true",
                    )
            await greeting
        finally:
            for task in (greeting, sniff):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    async def greeting(self) -> None:
        self.step = "waiting for the greeting"
        code, text = await self.reply()
        if code != 220:
            raise _Found(
                Problem.SERVER_REJECTED,
                f"{self.where} refused the session: {text}",
                "the server does not accept this machine (IP allow-list, blocklist or connection limit): "
                "ask its administrator",
            )
        self.step = "EHLO"

    async def ehlo(self) -> None:
        self.step = "EHLO"
        async with self.bounded():
            # the name aiosmtplib (so the Mailer) says EHLO with
            name = await _in_daemon_thread(socket.getfqdn, "mail-probe-fqdn")
        code, text = await self.command(f"EHLO {name}")
        if code != 250:
            raise self.unexpected("EHLO", text)
        self.extensions = {}
        for line in self.last_lines[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params.upper()

    async def starttls(self) -> None:
        if "STARTTLS" not in self.extensions:
            raise _Found(
                Problem.STARTTLS_NOT_OFFERED,
                f"{self.where} does not offer STARTTLS, but MAIL_STARTTLS=true",
                "use the port that offers TLS (587 with MAIL_STARTTLS=true, or 465 with MAIL_SSL_TLS=true); "
                "a network filter may also be stripping STARTTLS",
            )
        self.step = "STARTTLS"
        code, text = await self.command("STARTTLS")
        if code != 220:
            raise self.unexpected("STARTTLS", text)
        self.step = "the TLS handshake after STARTTLS"
        try:
            async with self.bounded():
                await self.stream_writer.start_tls(self.context, server_hostname=self.settings.server)
        except ssl.SSLCertVerificationError as error:
            raise self.certificate_problem(error) from None
        except TimeoutError:
            raise
        except (ssl.SSLError, OSError) as error:
            raise self.tls_failure(error) from None

    async def login(self) -> None:
        settings = self.settings
        if "AUTH" not in self.extensions:
            if not settings.encrypted and "STARTTLS" in self.extensions:
                raise self.auth_requires_tls()
            raise _Found(
                Problem.AUTH_NOT_OFFERED,
                f"{self.where} does not offer login (AUTH) on this port",
                "use the submission port that accepts logins (587 or 465), "
                "or MAIL_USE_CREDENTIALS=false if this server relays without login",
            )
        offered = self.extensions["AUTH"].split()
        if settings.auth == "xoauth2":
            await self.xoauth2(offered)
            return
        mechanism = next((m for m in SUPPORTED_MECHANISMS if m in offered), None)
        if mechanism is None:
            raise _Found(
                Problem.AUTH_NOT_OFFERED,
                f"{self.where} offers only login mechanisms {' '.join(offered) or '(none)'}, "
                f"none of {', '.join(SUPPORTED_MECHANISMS)}",
                "use a server or port that accepts password logins, "
                "or MAIL_USE_CREDENTIALS=false if this server relays without login",
            )
        self.step = f"AUTH {mechanism}"
        code, text = await self.authenticate(mechanism)
        if code == 235:
            return
        if code in (530, 538):
            raise self.auth_requires_tls()
        if code in (534, 535, 550) and wants_oauth(text):
            raise _Found(
                Problem.OAUTH_REQUIRED,
                f"{self.where} refused the password login because it wants OAuth2: {text}",
                "set MAIL_AUTH=xoauth2 and the MAIL_OAUTH_* variables (README: Signing in with OAuth2)",
            )
        if code in (534, 535):
            raise _Found(
                Problem.AUTH_FAILED,
                f"{self.where} rejected the login of MAIL_USERNAME={self.username}: {text}",
                login_advice(settings.server, settings.username),
            )
        raise self.unexpected(f"AUTH {mechanism}", text)

    async def xoauth2(self, offered: list[str]) -> None:
        """Fetch a token, then log in with `AUTH XOAUTH2`; each of the two steps is diagnosed apart."""
        if "XOAUTH2" not in offered:
            raise _Found(
                Problem.AUTH_NOT_OFFERED,
                f"{self.where} offers only login mechanisms {' '.join(offered) or '(none)'}, not XOAUTH2",
                "use the provider's SMTP host (smtp.office365.com, smtp.gmail.com), or MAIL_AUTH=password",
            )
        self.step = "fetching the OAuth2 token"
        try:
            token = (await fetch_token(self.settings)).value
        except TokenError as error:
            raise _Found(Problem(error.failure.value), error.reason, error.fix) from None
        self.step = "AUTH XOAUTH2"
        code, text = await self.command(
            "AUTH XOAUTH2 " + auth_xoauth2_encode(self.settings.username, token).decode()
        )
        if code == 334:  # an error challenge: an empty answer gets the final reply
            code, text = await self.command("")
        if code == 235:
            return
        if code in (530, 538):
            raise self.auth_requires_tls()
        if code in (534, 535):
            refusal = smtp_refusal(self.settings, text, token)
            raise _Found(Problem(refusal.failure.value), refusal.reason, refusal.fix)
        raise self.unexpected("AUTH XOAUTH2", text)

    async def authenticate(self, mechanism: str) -> tuple[int, str]:
        username, password = self.settings.username, self.settings.password.get_secret_value()
        if mechanism == "PLAIN":
            return await self.command("AUTH PLAIN " + auth_plain_encode(username, password).decode())
        if mechanism == "CRAM-MD5":
            code, text = await self.command("AUTH CRAM-MD5")
            if code != 334:
                return code, text
            try:
                answer = auth_crammd5_verify(username, password, self.last_lines[-1])
            except aiosmtplib.SMTPAuthenticationError:
                raise self.unexpected("AUTH CRAM-MD5", text) from None
            return await self.command(answer.decode())
        code, text = await self.command("AUTH LOGIN")
        for answer in auth_login_encode(username, password):
            if code != 334:
                break
            code, text = await self.command(answer.decode())
        return code, text

    # -- second connections that tell TLS and plain SMTP apart -------------------------------------

    async def plain_greeting(self) -> str:
        """The first line a fresh connection receives if the port speaks plain SMTP, else ''."""
        try:
            reader, writer = await asyncio.open_connection(self.address, self.settings.port)
        except OSError:
            return ""
        try:
            async with asyncio.timeout(PLAIN_GREETING_WAIT):
                line = (await reader.readline()).decode("ascii", "replace").strip()
        except (OSError, ValueError):  # TimeoutError is an OSError: nothing came
            return ""
        finally:
            await _abort(writer)
        return line if line[:3].isdigit() else ""

    # -- replies ----------------------------------------------------------------------------------

    @property
    def stream_writer(self) -> asyncio.StreamWriter:
        assert self.writer is not None, "connect() first"
        return self.writer

    async def command(self, line: str) -> tuple[int, str]:
        try:
            self.stream_writer.write(line.encode() + b"\r\n")
            async with self.bounded():
                await self.stream_writer.drain()
        except TimeoutError:
            raise
        except OSError:
            raise self.closed() from None
        return await self.reply()

    async def reply(self) -> tuple[int, str]:
        """One SMTP reply as (code, its lines joined); the lines are kept in `last_lines`."""
        assert self.reader is not None, "connect() first"
        self.last_lines = []
        while len(self.last_lines) < MAX_REPLY_LINES:
            try:
                async with self.bounded():
                    raw = await self.reader.readline()
            except ValueError:  # a line longer than the stream's limit
                raise self.not_smtp("a line of more than 64 KiB") from None
            except TimeoutError:
                raise
            except OSError:
                raw = b""
            if not raw:
                raise self.closed()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise self.not_smtp(repr(_printable(line, self.secrets, 60)))
            self.last_lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), _printable(f"{line[:3]} {' '.join(self.last_lines)}", self.secrets)
        raise self.not_smtp(f"a reply of more than {MAX_REPLY_LINES} lines")

    # -- diagnoses --------------------------------------------------------------------------------

    def closed(self) -> _Found:
        during = self.step if self.step.startswith("waiting") else f"answering {self.step}"
        return _Found(
            Problem.CONNECTION_CLOSED,
            f"{self.where} closed the connection while {during}",
            "the server may limit connections or block this address; check MAIL_PORT and the server's logs",
        )

    def not_smtp(self, sample: str) -> _Found:
        return _Found(
            Problem.NOT_SMTP,
            f"{self.where} answered, but not in SMTP: {sample}",
            "MAIL_PORT points at another kind of service: use the SMTP submission port (587 or 465)",
        )

    @property
    def username(self) -> str:
        """MAIL_USERNAME as shown: not at all when it is the password too."""
        if redact(self.settings.username, self.secrets) != self.settings.username:
            return "(not shown: it contains MAIL_PASSWORD)"
        return self.settings.username

    def success_message(self) -> str:
        settings = self.settings
        tls = "implicit TLS" if settings.ssl_tls else "STARTTLS" if settings.starttls else "no TLS"
        login = f"login as {self.username}" if settings.use_credentials else "no login"
        return f"{self.where} accepted the connection, {tls} and {login}"

    def timed_out(self) -> _Found:
        seconds = f"{self.settings.timeout:g} s"
        if self.step == "fetching the OAuth2 token":
            error = token_timeout(self.settings)
            return _Found(Problem.OAUTH_ENDPOINT_UNREACHABLE, error.reason, error.fix)
        if self.step == "resolving MAIL_SERVER":
            return _Found(
                Problem.DNS_FAILURE,
                f"MAIL_SERVER={self.settings.server} did not resolve within {seconds}",
                "this machine's DNS server does not answer: check /etc/resolv.conf or the network",
            )
        if self.step == "connecting":
            return self.connect_timeout()
        if self.step in ("waiting for the greeting", "the TLS handshake"):
            sent = "no SMTP greeting" if self.step.startswith("waiting") else "no answer to the TLS handshake"
            return _Found(
                Problem.NO_GREETING,
                f"{self.where} accepted the connection but sent {sent} within {seconds}",
                "check that MAIL_PORT is the server's SMTP port; a proxy or firewall may be holding "
                "the connection open",
            )
        return _Found(
            Problem.SERVER_TIMEOUT,
            f"{self.where} stopped answering during {self.step} (nothing within {seconds})",
            "the server or a middlebox is stalling: try again later, or raise MAIL_TIMEOUT",
        )

    def connect_timeout(self) -> _Found:
        return _Found(
            Problem.CONNECT_TIMEOUT,
            f"{self.where} did not accept the connection within {self.settings.timeout:g} s",
            "a firewall is probably dropping it (many hosts block outgoing ports 25, 465 and 587): "
            "allow the port outbound, or try the provider's other port",
        )

    def certificate_problem(self, error: ssl.SSLCertVerificationError) -> _Found:
        reason = _printable(str(error.verify_message or error.reason), self.secrets)
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
            f"the TLS handshake with {self.where} failed ({_printable(str(reason), self.secrets)})",
            "check that MAIL_SSL_TLS/MAIL_STARTTLS match the port; the server may need a TLS version or "
            "cipher this Python's OpenSSL does not offer",
        )

    def auth_requires_tls(self) -> _Found:
        return _Found(
            Problem.AUTH_REQUIRES_TLS,
            f"{self.where} offers login only after TLS, but the connection is not encrypted",
            "set MAIL_STARTTLS=true (or MAIL_SSL_TLS=true on an implicit-TLS port)",
        )

    def unexpected(self, command: str, text: str) -> _Found:
        kind = "a temporary failure" if text[:1] == "4" else "an error"
        return _Found(
            Problem.UNEXPECTED_REPLY,
            f"{self.where} answered {command} with {kind}: {text}",
            "retry later if the reply starts with 4; otherwise look it up in the server's documentation",
        )

    # -- cleanup ----------------------------------------------------------------------------------

    async def close(self) -> None:
        """After a complete dialogue, QUIT and close politely (a courtesy, bounded); otherwise drop at once."""
        writer = self.writer
        if writer is None:
            return
        if self.finished:
            self.step = "QUIT"
            with contextlib.suppress(_Found, OSError):  # TimeoutError is an OSError
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.command("QUIT")
                    writer.close()
                    await writer.wait_closed()
        await _abort(writer)


async def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once, and let the loop release its socket before returning."""
    # Aborting a TLS transport that already closed raises AttributeError on Python 3.11.
    with contextlib.suppress(AttributeError, OSError):
        writer.transport.abort()
    await asyncio.sleep(0)
