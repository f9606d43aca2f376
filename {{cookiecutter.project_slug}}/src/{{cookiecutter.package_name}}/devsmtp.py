"""Embedded SMTP server for development and tests (aiosmtpd).

It speaks STARTTLS with a throwaway CA and requires AUTH, so development
exercises the same TLS and login path as production. Every message is stored
as an `.eml` file in the inbox folder.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

TlsMode = Literal["starttls", "implicit", "plain"]

# aiosmtpd logs every SMTP command at INFO and warns about its own deprecated attribute on every
# login; the server prints one summary line per message instead.
_aiosmtpd_log = logging.getLogger("mail.log")
_aiosmtpd_log.setLevel(logging.WARNING)
_aiosmtpd_log.addFilter(lambda record: "login_data is deprecated" not in record.getMessage())

DEV_USERNAME = "dev"
DEV_PASSWORD = "dev"  # noqa: S105 - the embedded server's fixed, documented development login


@dataclass(frozen=True)
class Received:
    """One message as the server received it."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> Any:
        """The parsed email (an `email.message.EmailMessage`)."""
        return message_from_bytes(self.data, policy=default_policy)


class PasswordAuthenticator:
    """Accepts exactly the given user names and passwords."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode(errors="replace")
            if self._users.get(login) == auth_data.password.decode(errors="replace"):
                return AuthResult(success=True, auth_data=login)
        # handled=False makes aiosmtpd answer 535 at once instead of leaving the client waiting.
        return AuthResult(success=False, handled=False)


class StoringHandler:
    """Hands every accepted message to `store`."""

    def __init__(self, store: Callable[[Received], None]) -> None:
        self._store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        self._store(
            Received(
                mail_from=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                data=data,
                tls=session.ssl is not None or _over_tls(server),
                login=str(session.auth_data) if session.authenticated else None,
            )
        )
        return "250 Message accepted for delivery"


def _over_tls(server: SMTP) -> bool:
    """True when the connection is implicit TLS (aiosmtpd sets `session.ssl` only after STARTTLS)."""
    return server.transport is not None and server.transport.get_extra_info("sslcontext") is not None


def write_private(path: Path, data: bytes) -> None:
    """Write a new file `path` readable by its owner only (0600, whatever the umask)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(data)


def load_or_create_ca(directory: Path) -> trustme.CA:
    """A CA kept in `directory` (ca.pem, ca.key) so clients can trust it across restarts.

    The folder (which also holds the inbox) is created 0700, the key 0600.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_file, key_file = directory / "ca.pem", directory / "ca.key"
    if cert_file.exists() and key_file.exists():
        return trustme.CA.from_pem(cert_file.read_bytes(), key_file.read_bytes())
    ca = trustme.CA(organization_name="Development SMTP CA")
    key_file.unlink(missing_ok=True)  # a key without its certificate: replaced with the new CA's
    write_private(key_file, ca.private_key_pem.bytes())
    cert_file.write_bytes(ca.cert_pem.bytes())
    return ca


def server_tls_context(ca: trustme.CA, *hostnames: str) -> ssl.SSLContext:
    """A server-side TLS context with a certificate issued by `ca` for `hostnames`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(hostnames or ("localhost", "127.0.0.1", "::1"))).configure_cert(context)
    return context


def start_server(
    handler: object,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TlsMode = "starttls",
    tls_context: ssl.SSLContext | None = None,
    users: Mapping[str, str] | None = None,
) -> Controller:
    """Start an SMTP server in a background thread; `controller.port` is the bound port.

    With `users`, AUTH is required (and, unless `tls` is "plain", only after TLS).
    """
    if tls != "plain" and tls_context is None:
        raise ValueError("a TLS mode needs tls_context")
    smtp_options: dict[str, Any] = {"auth_required": users is not None}
    if users is not None:
        smtp_options["authenticator"] = PasswordAuthenticator(users)
        # aiosmtpd only recognises STARTTLS as TLS; with implicit TLS the socket is TLS from the start.
        smtp_options["auth_require_tls"] = tls == "starttls"
    if tls == "starttls":
        smtp_options.update(tls_context=tls_context, require_starttls=True)
    controller = Controller(
        handler,
        hostname=host,
        port=port or free_port(host),
        ssl_context=tls_context if tls == "implicit" else None,
        server_hostname="localhost",
        ready_timeout=10.0,
        **smtp_options,
    )
    controller.start()
    return controller


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def save_to_inbox(inbox: Path, received: Received) -> Path:
    """Write `received` as `<time>-<random>.eml` in `inbox` (created 0700; the file 0600) and return the path."""
    inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = inbox / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
    write_private(path, received.data)
    return path


def summary(received: Received) -> str:
    """One line describing a received message, for the console; control characters are escaped."""
    message = received.message
    try:
        subject, notification_id = message.get("Subject", ""), message.get("X-Notification-ID", "-")
    except Exception:  # the email package raises assorted errors on malformed headers
        subject, notification_id = "(unreadable)", "-"
    line = (
        f"[dev-smtp] from={received.mail_from} to={','.join(received.recipients)} "
        f"subject={str(subject)!r} id={notification_id} "
        f"tls={'yes' if received.tls else 'no'}"
    )
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in line)


def start_dev_server(directory: Path, host: str = "127.0.0.1", port: int = 2525) -> Controller:
    """The development server: STARTTLS with the CA in `directory`, login dev/dev, inbox `directory/inbox`."""
    ca = load_or_create_ca(directory)

    def store(received: Received) -> None:
        save_to_inbox(directory / "inbox", received)
        print(summary(received), flush=True)

    return start_server(
        StoringHandler(store),
        host=host,
        port=port,
        tls="starttls",
        tls_context=server_tls_context(ca),
        users={DEV_USERNAME: DEV_PASSWORD},
    )
