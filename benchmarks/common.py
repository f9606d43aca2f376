"""Shared by the benchmarks: render the template, a counting SMTP sink in its own process, messages.

The sink speaks STARTTLS (trustme CA) and requires AUTH, like a real submission server, but does
nothing per message beyond counting it: no MIME parsing, no file writes, so on a small machine it
measures the client, not itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1]
USERNAME = "bench"
PASSWORD = "bench-only-password"  # pragma: allowlist secret - the local sink's throwaway login
SENDER = "bench@example.com"
BODY = (
    "Hello,\n\nyour monthly report is ready. Sign in to read it, or reply to this email if "
    "something looks wrong.\n\nThe team\n"
)
"""A typical short notification (about 150 bytes)."""


@dataclass(frozen=True)
class Project:
    """A rendered project whose `src` is importable."""

    path: Path
    package: str

    @property
    def src(self) -> Path:
        return self.path / "src"


def render_project(output_dir: Path, **answers: str) -> Project:
    """Render the template's defaults (with `answers` over them) into `output_dir` (no network) and put its
    `src` on sys.path."""
    from cookiecutter.main import cookiecutter

    path = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir), extra_context=answers))
    [package] = [child.name for child in (path / "src").iterdir() if (child / "__init__.py").is_file()]
    sys.path.insert(0, str(path / "src"))
    return Project(path, package)


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A temporary working directory, and no MAIL_* or API_* variables: no .env or shell setting leaks in."""
    for name in list(os.environ):
        if name.startswith(("MAIL_", "API_")):
            del os.environ[name]
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        os.chdir(directory)
        try:
            yield Path(directory)
        finally:
            os.chdir(previous)


@dataclass(frozen=True)
class Tls:
    """Files of a throwaway CA and of a server certificate it issued for localhost."""

    ca_file: Path
    server_pem: Path


def make_tls(directory: Path) -> Tls:
    import trustme

    ca = trustme.CA()
    tls = Tls(directory / "ca.pem", directory / "server.pem")
    ca.cert_pem.write_to_path(str(tls.ca_file))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tls.server_pem))
    return tls


def mail_env(sink: Sink, tls: Tls) -> dict[str, str]:
    """MAIL_* variables that point a client at `sink`."""
    return {
        "MAIL_SERVER": "localhost",
        "MAIL_PORT": str(sink.port),
        "MAIL_USERNAME": USERNAME,
        "MAIL_PASSWORD": PASSWORD,
        "MAIL_FROM": SENDER,
        "MAIL_STARTTLS": "true",
        "MAIL_SSL_TLS": "false",
        "MAIL_CERT_BUNDLE": str(tls.ca_file),
        "MAIL_TIMEOUT": "10",
    }


def messages(count: int) -> list[Any]:
    """`count` distinct fastapi-mail messages, each to its own recipient, with an X-Notification-ID."""
    from fastapi_mail import MessageSchema, MessageType

    return [
        MessageSchema(
            subject=f"Benchmark message {number}",
            recipients=[f"user{number}@example.com"],
            body=BODY,
            subtype=MessageType.plain,
            headers={"X-Notification-ID": f"bench-{number}"},
        )
        for number in range(count)
    ]


async def http_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, bytes]:
    """Send one HTTP/1.1 `request` on a keep-alive connection; return its status line and its body."""
    writer.write(request)
    status = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    """The counting STARTTLS + AUTH SMTP server, run in a child process; use as a context manager."""

    def __init__(self, tls: Tls) -> None:
        context = multiprocessing.get_context("spawn")
        self._count: Any = context.Value("q", 0, lock=False)
        self._port: Any = context.Value("i", 0, lock=False)
        ready = context.Event()
        self._process = context.Process(
            target=_serve, args=(str(tls.server_pem), self._port, self._count, ready), daemon=True
        )
        self._process.start()
        if not ready.wait(30):
            self.close()
            raise RuntimeError("the SMTP sink did not start within 30 s")
        self.port = int(self._port.value)

    @property
    def received(self) -> int:
        """Messages accepted so far."""
        return int(self._count.value)

    def wait_for(self, count: int, timeout: float) -> float:
        """Block until `count` messages were accepted; returns time.perf_counter() at that moment."""
        deadline = time.monotonic() + timeout
        while self.received < count:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the sink received {self.received} of {count} messages in {timeout:.0f} s"
                )
            time.sleep(0.002)
        return time.perf_counter()

    def close(self) -> None:
        self._process.terminate()
        self._process.join(10)

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _serve(server_pem: str, port: Any, count: Any, ready: Any) -> None:
    """The sink process: aiosmtpd on a free loopback port, counting each accepted message."""
    import asyncio
    import logging

    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd warns on every login otherwise

    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(server_pem)
    credentials = (USERNAME.encode(), PASSWORD.encode())

    class Counter:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            count.value += 1
            return "250 OK"

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == credentials:
            return AuthResult(success=True, auth_data=USERNAME)
        return AuthResult(success=False, handled=False)

    handler = Counter()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def session() -> SMTP:
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=tls_context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticate,
            loop=loop,
        )

    server = loop.run_until_complete(loop.create_server(session, "127.0.0.1", 0))
    port.value = server.sockets[0].getsockname()[1]
    ready.set()
    loop.run_forever()
