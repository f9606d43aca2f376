"""Diagnose the SMTP settings: connect, TLS and login, then say exactly what to change.

`probe()` walks the same path as sending (connect, greeting, EHLO, STARTTLS or implicit
TLS, AUTH) and stops there: it never sends MAIL FROM. Each failure becomes one
`Diagnosis` with a `Problem` class, a one-line message, a one-line fix and a distinct
exit code. The whole probe is bounded by MAIL_TIMEOUT (plus at most half a second to
close), and the password never appears in a diagnosis, even if the server echoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiosmtplib.auth import auth_login_encode, auth_plain_encode, auth_xoauth2_encode

from .errors import redact, wants_oauth
from .oauth import TokenError, fetch_token, smtp_refusal, token_timeout
from .settings import MailSettings, SettingsError, load_settings

SUPPORTED_MECHANISMS = ("PLAIN", "LOGIN")
CLOSE_TIMEOUT = 0.5
PLAIN_GREETING_WAIT = 1.0
TLS_SNIFF_AFTER = 1.0  # seconds without a greeting before checking whether the port wants TLS
MAX_REPLY_LINES = 100
HOST_NAME = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class Problem(StrEnum):
    """One class per diagnosis; `exit_code` tells them apart for scripts.

    Exit codes are grouped: 2 settings, 10-19 reaching an SMTP server, 20-29 TLS, 30-39 login,
    40-49 OAuth2 (MAIL_AUTH=xoauth2).
    """

    OK = "ok"
    SETTINGS_INVALID = "settings_invalid"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_FAILED = "connect_failed"
    NO_GREETING = "no_greeting"
    CONNECTION_CLOSED = "connection_closed"
    NOT_SMTP = "not_smtp"
    SERVER_REJECTED = "server_rejected"
    SERVER_TIMEOUT = "server_timeout"
    UNEXPECTED_REPLY = "unexpected_reply"
    # The port speaks implicit TLS, but the settings expect a plain greeting (STARTTLS or no TLS).
    IMPLICIT_TLS_ON_STARTTLS_PORT = "implicit_tls_on_starttls_port"
    # The port speaks plain SMTP (usually with STARTTLS), but the settings say MAIL_SSL_TLS=true.
    STARTTLS_ON_IMPLICIT_TLS_PORT = "starttls_on_implicit_tls_port"
    CERTIFICATE_UNTRUSTED = "certificate_untrusted"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    CERTIFICATE_EXPIRED = "certificate_expired"
    TLS_FAILED = "tls_failed"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    AUTH_REQUIRES_TLS = "auth_requires_tls"
    AUTH_NOT_OFFERED = "auth_not_offered"
    AUTH_FAILED = "auth_failed"
    OAUTH_REQUIRED = "oauth_required"
    OAUTH_ENDPOINT_UNREACHABLE = "oauth_endpoint_unreachable"
    OAUTH_CLIENT_INVALID = "oauth_client_invalid"
    OAUTH_CONSENT_MISSING = "oauth_consent_missing"
    OAUTH_GRANT_INVALID = "oauth_grant_invalid"
    OAUTH_TOKEN_REFUSED = "oauth_token_refused"  # noqa: S105 - a problem class, not a secret

    @property
    def exit_code(self) -> int:
        """The process exit code for this class (0 only for OK)."""
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Problem.OK: 0,
    Problem.SETTINGS_INVALID: 2,
    Problem.DNS_FAILURE: 10,
    Problem.CONNECTION_REFUSED: 11,
    Problem.CONNECT_TIMEOUT: 12,
    Problem.CONNECT_FAILED: 13,
    Problem.NO_GREETING: 14,
    Problem.CONNECTION_CLOSED: 15,
    Problem.NOT_SMTP: 16,
    Problem.SERVER_REJECTED: 17,
    Problem.SERVER_TIMEOUT: 18,
    Problem.UNEXPECTED_REPLY: 19,
    Problem.IMPLICIT_TLS_ON_STARTTLS_PORT: 20,
    Problem.STARTTLS_ON_IMPLICIT_TLS_PORT: 21,
    Problem.CERTIFICATE_UNTRUSTED: 22,
    Problem.HOSTNAME_MISMATCH: 23,
    Problem.CERTIFICATE_EXPIRED: 24,
    Problem.TLS_FAILED: 25,
    Problem.STARTTLS_NOT_OFFERED: 26,
    Problem.AUTH_REQUIRES_TLS: 30,
    Problem.AUTH_NOT_OFFERED: 31,
    Problem.AUTH_FAILED: 32,
    Problem.OAUTH_REQUIRED: 33,
    Problem.OAUTH_ENDPOINT_UNREACHABLE: 40,
    Problem.OAUTH_CLIENT_INVALID: 41,
    Problem.OAUTH_CONSENT_MISSING: 42,
    Problem.OAUTH_GRANT_INVALID: 43,
    Problem.OAUTH_TOKEN_REFUSED: 44,
}


@dataclass(frozen=True)
class Diagnosis:
    """The outcome of a probe: what is wrong (or OK) and how to fix it, one line each."""

    problem: Problem
    message: str
    fix: str
    server: str = ""
    port: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when connect, TLS and login all succeeded."""
        return self.problem is Problem.OK

    @property
    def exit_code(self) -> int:
        """The process exit code: 0 when OK, distinct per problem class otherwise."""
        return self.problem.exit_code

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for `check-mail --json` and the health endpoint."""
        return {
            "ok": self.ok,
            "problem": self.problem.value,
            "exit_code": self.exit_code,
            "message": self.message,
            "fix": self.fix,
            "server": self.server,
            "port": self.port,
            "elapsed_seconds": round(self.elapsed, 3),
        }


def render_diagnosis(diagnosis: Diagnosis, json_output: bool = False) -> str:
    """The diagnosis as printed by `check-mail`: JSON, or two lines for people."""
    if json_output:
        return json.dumps(diagnosis.as_dict())
    if diagnosis.ok:
        return f"OK: {diagnosis.message} ({diagnosis.elapsed:.2f} s)"
    return f"FAILED [{diagnosis.problem.value}]: {diagnosis.message}\nfix: {diagnosis.fix}"


def settings_diagnosis(error: SettingsError) -> Diagnosis:
    """A diagnosis for settings that do not load (exit code 2, as when the service refuses to start)."""
    return Diagnosis(
        Problem.SETTINGS_INVALID,
        str(error),
        "correct the variables named in the message, in the environment or .env (see .env.example)",
    )


def check_mail_command(json_output: bool = False) -> int:
    """`check-mail`: load MailSettings, probe the server, print the diagnosis; returns the exit code."""
    try:
        settings = load_settings(MailSettings)
    except SettingsError as error:
        diagnosis = settings_diagnosis(error)
    else:
        diagnosis = asyncio.run(probe(settings))
    print(render_diagnosis(diagnosis, json_output), flush=True)
    return diagnosis.exit_code


class ProbeCache:
    """Shares one probe result for `ttl` seconds, with at most one probe in flight.

    The health endpoint uses it so that polling it cannot hammer the SMTP server.
    """

    def __init__(self, settings: MailSettings, ttl: float = 5.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self._result: Diagnosis | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> Diagnosis | None:
        if self._result is not None and time.monotonic() - self._checked_at < self.ttl:
            return self._result
        return None

    async def get(self) -> Diagnosis:
        """The cached diagnosis, probing again once it is older than `ttl`."""
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._fresh()
            if cached is None:
                cached = self._result = await probe(self.settings)
                self._checked_at = time.monotonic()
            return cached


class _Found(Exception):  # noqa: N818 - control flow, not an error
    """Ends the probe with a diagnosis."""

    def __init__(self, problem: Problem, message: str, fix: str) -> None:
        super().__init__(problem.value)
        self.problem, self.message, self.fix = problem, message, fix


async def probe(settings: MailSettings) -> Diagnosis:
    """Connect, negotiate TLS and log in (never send); diagnose the first step that fails."""
    started = time.monotonic()
    try:
        context = settings.tls_context
    except (OSError, ssl.SSLError) as error:
        found = _Found(
            Problem.SETTINGS_INVALID,
            f"MAIL_CERT_BUNDLE could not be loaded as PEM CA certificates ({type(error).__name__})",
            "point MAIL_CERT_BUNDLE at a PEM file holding the CA certificate(s) that signed the server's",
        )
    else:
        session = _Session(settings, context)
        try:
            async with asyncio.timeout(settings.timeout):
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


def login_advice(server: str, username: str) -> str:
    """What to check when `server` rejects a login: provider-specific advice from the host name."""
    host = server.lower().rstrip(".")

    def on(*domains: str) -> bool:
        return any(host == domain or host.endswith("." + domain) for domain in domains)

    if on("gmail.com", "googlemail.com"):
        return (
            "Gmail refuses the account password: turn on 2-Step Verification and set MAIL_PASSWORD to a "
            "16-letter App Password (Google Account > Security > App passwords)"
        )
    if on("sendgrid.net"):
        user = "" if username == "apikey" else f" (it is {username!r})"
        return (
            f"SendGrid: MAIL_USERNAME must be the literal word apikey{user} and MAIL_PASSWORD an API key "
            "with Mail Send permission"
        )
    if on("postmarkapp.com"):
        return "Postmark: MAIL_USERNAME and MAIL_PASSWORD must both be the Server API token"
    if on("office365.com", "outlook.com"):
        return (
            "Microsoft 365: enable Authenticated SMTP for the mailbox (admin center > user > Mail > "
            "Manage email apps); security defaults or MFA policies can also block SMTP login"
        )
    if on("amazonaws.com"):
        return (
            "Amazon SES: use SMTP credentials created in the SES console (SMTP settings) for this "
            "region; AWS access keys do not work as SMTP passwords"
        )
    if on("mailgun.org"):
        return (
            "Mailgun: use the sending domain's SMTP credentials (Sending > Domain settings > "
            "SMTP credentials), e.g. MAIL_USERNAME=postmaster@your-domain"
        )
    return "check MAIL_USERNAME and MAIL_PASSWORD (the server rejected this pair)"


def _printable(text: str, limit: int = 200) -> str:
    """Server text made safe for one terminal line."""
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, resolved in a daemon thread.

    `loop.getaddrinfo` would use the default executor, which `asyncio.run` waits for
    at exit: a hanging DNS server would then hold `check-mail` past its time bound.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str]] = loop.create_future()

    def settle(addresses: list[str], error: OSError | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(addresses)

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            result: tuple[list[str], OSError | None] = ([], error)
        else:
            result = (list(dict.fromkeys(str(info[4][0]) for info in infos)), None)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=lookup, name="mail-probe-dns", daemon=True).start()
    return await future


def _client_hello(server_name: str) -> bytes:
    """The first bytes a TLS client sends, to see whether a port speaks TLS.

    No handshake is completed with this context, so it verifies nothing.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _looks_like_tls(header: bytes) -> bool:
    """A TLS record header: handshake (22) or alert (21), protocol version 3.x."""
    return len(header) >= 2 and header[0] in (21, 22) and header[1] == 3


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
            addresses = await _resolve(settings.server, settings.port)
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
                self.reader, self.writer = await asyncio.open_connection(address, settings.port)
            except OSError as error:
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
            await self.stream_writer.start_tls(self.context, server_hostname=self.settings.server)
        except ssl.SSLCertVerificationError as error:
            raise self.certificate_problem(error) from None
        except (ssl.SSLError, OSError) as error:
            greeting = await self.plain_greeting()
            if greeting:
                raise _Found(
                    Problem.STARTTLS_ON_IMPLICIT_TLS_PORT,
                    f"{self.where} speaks plain SMTP ({_printable(greeting, 80)!r}), "
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
            done, _ = await asyncio.wait({greeting}, timeout=min(TLS_SNIFF_AFTER, self.settings.timeout / 4))
            if not done:
                sniff = asyncio.ensure_future(self.speaks_tls())
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
        code, text = await self.command(f"EHLO {self.local_name()}")
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
            await self.stream_writer.start_tls(self.context, server_hostname=self.settings.server)
        except ssl.SSLCertVerificationError as error:
            raise self.certificate_problem(error) from None
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
                f"{self.where} rejected the login of MAIL_USERNAME={settings.username}: {text}",
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
        code, text = await self.command("AUTH LOGIN")
        for answer in auth_login_encode(username, password):
            if code != 334:
                break
            code, text = await self.command(answer.decode())
        return code, text

    # -- second connections that tell TLS and plain SMTP apart -------------------------------------

    async def speaks_tls(self) -> bool:
        """Whether the port answers a TLS ClientHello with a TLS record."""
        try:
            reader, writer = await asyncio.open_connection(self.address, self.settings.port)
        except OSError:
            return False
        try:
            writer.write(_client_hello(self.settings.server))
            return _looks_like_tls(await reader.readexactly(2))
        except (OSError, asyncio.IncompleteReadError):
            return False
        finally:
            await _abort(writer)

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
            await self.stream_writer.drain()
        except OSError:
            raise self.closed() from None
        return await self.reply()

    async def reply(self) -> tuple[int, str]:
        """One SMTP reply as (code, its lines joined); the lines are kept in `last_lines`."""
        assert self.reader is not None, "connect() first"
        self.last_lines = []
        while len(self.last_lines) < MAX_REPLY_LINES:
            try:
                raw = await self.reader.readline()
            except ValueError:  # a line longer than the stream's limit
                raise self.not_smtp("a line of more than 64 KiB") from None
            except OSError:
                raw = b""
            if not raw:
                raise self.closed()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise self.not_smtp(repr(_printable(line, 60)))
            self.last_lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), _printable(f"{line[:3]} {' '.join(self.last_lines)}")
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

    def success_message(self) -> str:
        settings = self.settings
        tls = "implicit TLS" if settings.ssl_tls else "STARTTLS" if settings.starttls else "no TLS"
        login = f"login as {settings.username}" if settings.use_credentials else "no login"
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
        reason = _printable(str(error.verify_message or error.reason))
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
            f"the TLS handshake with {self.where} failed ({_printable(str(reason))})",
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

    def local_name(self) -> str:
        """This host's name for EHLO if it is fully qualified, else our address as a literal."""
        name = socket.gethostname()
        if HOST_NAME.match(name):
            return name
        address = str(self.stream_writer.get_extra_info("sockname")[0])
        return f"[IPv6:{address}]" if ":" in address else f"[{address}]"

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
