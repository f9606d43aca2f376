"""A real SMTP server for tests: STARTTLS with a trustme CA, AUTH required, faults on demand."""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from {{ cookiecutter.package_name }}.devsmtp import Received, StoringHandler, TlsMode, server_tls_context, start_server

USERNAME = "mailer"
PASSWORD = "s3cret-Test-Passw0rd"


class FaultyHandler(StoringHandler):
    """Stores messages, but first answers with the queued faults.

    `data_replies`: replies to the next DATA commands instead of accepting, e.g. "451 4.3.0 try later".
    `every_nth`: (n, reply): every n-th DATA command is answered `reply` instead (a throttling server).
    `refused`: recipients answered "550 5.1.1 unknown mailbox" at RCPT.
    `rcpt_replies`: replies to the next RCPTs of an address, e.g. {"bob@example.org": ["452 4.5.3 too many"]}.
    `owned`: the senders the login may use (None: any); another is refused at MAIL FROM as Postfix's
    `reject_sender_login_mismatch` does ("553 5.7.1 <...>: Sender address rejected: not owned by user ...").
    `relay_needs_login`: refuse RCPT from a client that did not log in, as Postfix's
    `smtpd_relay_restrictions = permit_sasl_authenticated, reject` does ("554 5.7.1 ... Client host rejected").
    `delay`: seconds to stall before answering each DATA (a client that leaves meanwhile leaves nothing).
    `data_faults`: what happens to the next messages instead, once each has been received up to its final
    ".": "drop" cuts the connection without a reply, "stall" never replies (until the client leaves); neither
    keeps the message, as Postfix keeps none whose end of DATA it did not answer.
    `arrived`: when each of `received` arrived (epoch seconds).
    `held`: how many messages wait for the reply to their end of DATA right now (`wait_held`).
    `connections`: the server side of every client connection, in the order they said EHLO.
    `logins`: each AUTH attempt as (mechanism, accepted).
    `ehlo_names`: the name each EHLO gave.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.arrived: list[float] = []
        self.data_replies: list[str] = []
        self.every_nth: tuple[int, str] | None = None
        self.data_commands = 0
        self.refused: set[str] = set()
        self.rcpt_replies: dict[str, list[str]] = {}
        self.owned: set[str] | None = None
        self.relay_needs_login = False
        self.delay = 0.0
        self.data_faults: list[str] = []
        self.held = 0
        self.connections: list[SMTP] = []
        self.logins: list[tuple[str, bool]] = []
        self.ehlo_names: list[str] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        super().__init__(self._record)

    def _record(self, received: Received) -> None:
        with self._arrived:
            self.received.append(received)
            self.arrived.append(time.time())
            self._arrived.notify_all()

    async def handle_EHLO(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._lock:
            self.ehlo_names.append(hostname)
            if not any(known is server for known in self.connections):
                self.connections.append(server)
        return responses

    def open_connections(self) -> int:
        """How many client connections are still open."""
        return sum(1 for server in self.connections if server.transport is not None)

    def drop_connections(self) -> None:
        """Close every client connection from the server side (as a server's idle timeout does); wait for it."""
        for server in list(self.connections):
            closed = threading.Event()

            def drop(server: SMTP = server, closed: threading.Event = closed) -> None:
                if isinstance(server.transport, asyncio.Transport):
                    server.transport.abort()
                server.loop.call_soon(closed.set)  # after the transport's own close callbacks

            server.loop.call_soon_threadsafe(drop)
            closed.wait(5.0)

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.owned is not None and address not in self.owned:
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {USERNAME}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.relay_needs_login and not session.authenticated:
            return "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied"
        if address in self.refused:
            return "550 5.1.1 unknown mailbox"
        with self._lock:
            queued = self.rcpt_replies.get(address)
            reply = queued.pop(0) if queued else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        with self._arrived:
            fault = self.data_faults.pop(0) if self.data_faults else None
            self.held += 1
            self._arrived.notify_all()
        try:
            if fault == "drop" and isinstance(server.transport, asyncio.Transport):
                server.transport.abort()  # aiosmtpd then cancels this handler: no reply, nothing kept
            if fault is not None:
                await asyncio.Event().wait()
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            with self._lock:
                self.held -= 1
        with self._lock:
            reply = self.data_replies.pop(0) if self.data_replies else None
            self.data_commands += 1
            if reply is None and self.every_nth and self.data_commands % self.every_nth[0] == 0:
                reply = self.every_nth[1]
        if reply is not None:
            return reply
        return await super().handle_DATA(server, session, envelope)

    def wait_held(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least `count` messages wait for the reply to their end of DATA."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.held >= count, timeout):
                raise AssertionError(f"expected {count} messages held at the end of DATA, got {self.held}")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least `count` messages arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} messages, got {len(self.received)}")
                self._arrived.wait(remaining)
            return list(self.received)


class SmtpServer:
    """A running test server and what a client needs to reach it."""

    def __init__(
        self,
        handler: FaultyHandler,
        port: int,
        ca_file: Path,
        tls: TlsMode,
        restart: Callable[[float], None] | None = None,
    ) -> None:
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = port
        self.ca_file = ca_file
        self.tls = tls
        self._restart = restart

    def restart(self, pause: float) -> None:
        """Stop as `postfix stop` does (every connection cut, no message kept unanswered), wait `pause` seconds,
        start again on the same port with the same handler (what arrived stays in `received`)."""
        if self._restart is None:
            raise RuntimeError("only a server of running_server() restarts")
        self._restart(pause)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def env(self) -> dict[str, str]:
        """MAIL_* variables that point a client at this server."""
        return {
            "MAIL_SERVER": "localhost",
            "MAIL_PORT": str(self.port),
            "MAIL_USERNAME": USERNAME,
            "MAIL_PASSWORD": PASSWORD,
            "MAIL_FROM": "noreply@example.com",
            "MAIL_FROM_NAME": "Test Sender",
            "MAIL_STARTTLS": str(self.tls == "starttls").lower(),
            "MAIL_SSL_TLS": str(self.tls == "implicit").lower(),
            "MAIL_USE_CREDENTIALS": "true",
            "MAIL_VALIDATE_CERTS": "true",
            "MAIL_CERT_BUNDLE": str(self.ca_file),
            "MAIL_TIMEOUT": "5",
            "MAIL_RETRY_BASE_DELAY": "0.01",
        }


@contextmanager
def running_server(
    ca: trustme.CA,
    ca_file: Path,
    tls: TlsMode = "starttls",
    port: int = 0,
    *,
    auth_required: bool = True,
    smtputf8: bool = True,
    size_limit: int | None = None,
) -> Iterator[SmtpServer]:
    """Run a server on `port` (default: a free loopback port) for the duration of the block.

    It offers AUTH; with `auth_required=False` a client that does not log in may go on to MAIL FROM.
    `smtputf8`: advertise SMTPUTF8 (aiosmtpd then takes UTF-8 addresses); without it, it refuses them.
    `size_limit`: the SIZE it advertises and enforces (aiosmtpd's default: 32 MiB).
    """
    handler = FaultyHandler()
    tls_context = None if tls == "plain" else server_tls_context(ca, "localhost", "127.0.0.1")

    def start(port: int) -> Controller:
        controller = start_server(
            handler, host="127.0.0.1", port=port, tls=tls, tls_context=tls_context, users={USERNAME: PASSWORD}
        )
        authenticate = controller.SMTP_kwargs["authenticator"]

        def counting(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
        ) -> AuthResult:
            result: AuthResult = authenticate(server, session, envelope, mechanism, auth_data)
            handler.logins.append((mechanism, result.success))
            return result

        controller.SMTP_kwargs["authenticator"] = counting
        controller.SMTP_kwargs["auth_required"] = auth_required
        controller.SMTP_kwargs["enable_SMTPUTF8"] = smtputf8
        if size_limit is not None:
            controller.SMTP_kwargs["data_size_limit"] = size_limit
        return controller

    running = [start(port)]
    bound = running[0].port

    def restart(pause: float) -> None:
        handler.drop_connections()
        running[0].stop()
        time.sleep(pause)
        running[0] = start(bound)

    try:
        yield SmtpServer(handler, bound, ca_file, tls, restart)
    finally:
        running[0].stop()


@contextmanager
def commands_read() -> Iterator[list[str]]:
    """The verb of every command line the test servers read during the block, in order ("EHLO", "MAIL", ...).

    From aiosmtpd's own log of each line it reads as a command (never a message's lines): what
    crossed the wire, whatever the handler's hooks see.
    """
    verbs: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = record.args[1] if record.msg == "%r >> %r" and isinstance(record.args, tuple) else None
            if isinstance(line, bytes):
                verbs.append(line.split(b" ", 1)[0].decode("ascii", "replace").upper())

    log = logging.getLogger("mail.log")
    level, recorder = log.level, Recorder()
    log.addHandler(recorder)
    log.setLevel(logging.INFO)
    try:
        yield verbs
    finally:
        log.removeHandler(recorder)
        log.setLevel(level)


class CramMd5Handler(FaultyHandler):
    """A `FaultyHandler` that checks CRAM-MD5 logins for real."""

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        challenge = f"<{time.monotonic_ns()}@localhost>".encode()
        answer = await server.challenge_auth(challenge)
        if not isinstance(answer, bytes):
            return AuthResult(success=False, handled=False)
        user, _, digest = answer.decode().partition(" ")
        expected = hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest()
        success = user == USERNAME and hmac.compare_digest(digest, expected)
        self.logins.append(("CRAM-MD5", success))
        return AuthResult(success=success, handled=False)


@contextmanager
def cram_md5_only_server(ca: trustme.CA, ca_file: Path) -> Iterator[SmtpServer]:
    """A STARTTLS server whose only login mechanism is CRAM-MD5 (no PLAIN, no LOGIN)."""
    handler = CramMd5Handler()
    controller = start_server(
        handler, tls="starttls", tls_context=server_tls_context(ca, "localhost"), users={USERNAME: PASSWORD}
    )
    controller.SMTP_kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
    try:
        yield SmtpServer(handler, controller.port, ca_file, "starttls")
    finally:
        controller.stop()
