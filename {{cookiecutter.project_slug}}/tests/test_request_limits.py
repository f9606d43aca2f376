"""Request limits on a real uvicorn: key before body, no body where none is taken, 413 before reading,
408 for slow clients, a cap on the body bytes of all requests together, lean 422s."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.deps import authenticated_client
from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.store import StoreSettings

from .conftest import API_KEY, auth, migrate, service
from .smtp_server import SmtpServer

HUNDRED_MB = 100 * 1024 * 1024
MIB = 1024 * 1024
CHUNK = b"x" * 65536
FRAMED_CHUNK = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)


@dataclass
class Uvicorn:
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@contextmanager
def running_uvicorn(monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[Uvicorn]:
    """The service, configured from the environment plus `env`, on a real uvicorn in a thread."""
    monkeypatch.setenv("API_KEYS", API_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    migrate(StoreSettings().database_url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Uvicorn(port)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def uvicorn_server(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Uvicorn]:
    """The service on a real uvicorn in a thread; API_BODY_TIMEOUT is 1 s."""
    with running_uvicorn(monkeypatch, API_BODY_TIMEOUT="1") as server:
        yield server


def request_head(
    *, key: str | None, length: int | None, method: str = "POST", path: str = "/notifications"
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def resident_bytes() -> int:
    """This process's resident memory (the server runs in a thread of it)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def push_until_answered(connection: socket.socket, chunk: bytes, limit: int) -> tuple[bytes, int]:
    """Send `chunk` repeatedly (up to `limit` bytes) until the server answers; the answer and bytes sent."""
    connection.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 20
    while sent < limit and time.monotonic() < deadline:
        readable, writable, _ = select.select([connection], [connection], [], 1)
        if readable:
            break
        if writable:
            try:
                sent += connection.send(chunk[: limit - sent])
            except (BlockingIOError, ConnectionError):
                break
    connection.settimeout(10)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer and (data := connection.recv(65536)):
            answer += data
    except ConnectionError:
        pass
    return answer, sent


@pytest.mark.parametrize(
    ("key", "length", "status"),
    [(None, HUNDRED_MB, b"401"), (None, None, b"401"), (API_KEY, HUNDRED_MB, b"413")],
    ids=["no-key", "no-key-chunked", "declared-too-large"],
)
def test_a_100_mb_body_is_refused_before_it_is_read(
    uvicorn_server: Uvicorn, key: str | None, length: int | None, status: bytes
) -> None:
    before = resident_bytes()
    started = time.monotonic()
    with uvicorn_server.connect() as connection:
        connection.sendall(request_head(key=key, length=length))
        answer, sent = push_until_answered(connection, CHUNK if length else FRAMED_CHUNK, HUNDRED_MB)

    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert time.monotonic() - started < 5
    assert sent < HUNDRED_MB // 10  # the server stopped reading: only socket buffers filled
    assert resident_bytes() - before < 30 * 1024 * 1024


def answer_to_head(server: Uvicorn, head: bytes) -> bytes:
    """The answer to the head of a request whose body is never sent (the server must not wait for it), read
    until the server closes the connection, as it does after refusing a body unread."""
    answer = b""
    with server.connect() as connection:
        connection.settimeout(10)
        connection.sendall(head)
        while data := connection.recv(65536):
            answer += data
    return answer


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("POST", "/health", None),
        ("GET", "/health/ready", None),
        ("POST", "/no/such/route", None),
        ("POST", "/notifications/0123456789abcdef/retry", API_KEY),
        ("GET", "/metrics", API_KEY),
    ],
)
def test_a_body_for_a_route_that_takes_none_is_refused_unread(
    uvicorn_server: Uvicorn, method: str, path: str, key: str | None
) -> None:
    answer = answer_to_head(uvicorn_server, request_head(key=key, length=MIB, method=method, path=path))

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"takes no request body" in answer


@pytest.mark.parametrize(
    "path", ["/metrics", "/notifications/0123456789abcdef/retry", "/notifications/no/such/route"]
)
def test_every_authenticated_path_needs_the_key_before_the_body(uvicorn_server: Uvicorn, path: str) -> None:
    answer = answer_to_head(uvicorn_server, request_head(key=None, length=1000, path=path))

    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_new_authenticated_router_is_checked_before_its_body(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = service(monkeypatch).app
    reports = APIRouter(dependencies=[Depends(authenticated_client)])

    @reports.post("/reports")
    async def report(body: dict[str, str]) -> dict[str, str]:
        return body

    app.include_router(reports)  # type: ignore[attr-defined]
    with TestClient(app) as client:
        anonymous = client.post(
            "/reports", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        mine = client.post("/reports", json={"a": "b"}, headers=auth())

    assert anonymous.status_code == 401  # FastAPI alone would parse the body first: 422
    assert mine.json() == {"a": "b"}


def test_anonymous_bodies_hold_no_memory(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 connections at once, each sending all but the last byte of 1 MiB to GET /health."""
    with running_uvicorn(monkeypatch, API_BODY_TIMEOUT="30") as server:
        before = resident_bytes()
        connections = [server.connect() for _ in range(100)]
        try:
            answers = []
            for connection in connections:
                connection.sendall(request_head(key=None, length=MIB, path="/health"))
                answer, _ = push_until_answered(connection, CHUNK, MIB - 1)
                answers.append(answer)
            grown = resident_bytes() - before
        finally:
            for connection in connections:
                connection.close()

    assert {answer[:12] for answer in answers} == {b"HTTP/1.1 413"}
    assert grown < 30 * MIB


def test_body_bytes_in_flight_are_capped_across_requests(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = {"MAX_REQUEST_BYTES": "4096", "MAX_REQUEST_BYTES_IN_FLIGHT": "8192", "API_BODY_TIMEOUT": "30"}
    with running_uvicorn(monkeypatch, **limits) as server:
        held: list[socket.socket] = []
        refused = b""
        for _ in range(10):  # each holds 4000 of its 4096 bytes until the next is refused
            connection = server.connect()
            connection.sendall(request_head(key=API_KEY, length=4096) + b" " * 4000)
            if select.select([connection], [], [], 0.5)[0]:
                refused = connection.recv(65536)
                connection.close()
                break
            held.append(connection)
        finished = []
        for connection in held:  # the rest of each body: answered, and their bytes given back
            connection.sendall(b" " * 96)
            finished.append(connection.recv(65536))
            connection.close()
        after = httpx.post(
            f"http://127.0.0.1:{server.port}/notifications",
            json={"to": ["alice@example.com"], "subject": "s", "body": "b"},
            headers=auth(),
        )

    assert refused.startswith(b"HTTP/1.1 503"), refused[:200]
    assert b"\r\nretry-after: 1\r\n" in refused.lower()
    assert b"MAX_REQUEST_BYTES_IN_FLIGHT" in refused
    assert len(held) >= 2  # two bodies of 4000 bytes fit in 8192
    assert {answer[:12] for answer in finished} == {b"HTTP/1.1 422"}  # spaces are no JSON
    assert after.status_code == 202


def test_a_chunked_body_is_cut_off_at_max_request_bytes(uvicorn_server: Uvicorn) -> None:
    with uvicorn_server.connect() as connection:
        connection.sendall(request_head(key=API_KEY, length=None))
        answer, sent = push_until_answered(connection, FRAMED_CHUNK, HUNDRED_MB)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"MAX_REQUEST_BYTES" in answer
    assert sent < HUNDRED_MB // 10


def test_a_client_sending_one_byte_at_a_time_is_cut_off(uvicorn_server: Uvicorn) -> None:
    started = time.monotonic()
    with uvicorn_server.connect() as connection:
        connection.sendall(request_head(key=API_KEY, length=100))
        answer = b""
        for _ in range(20):
            readable, _, _ = select.select([connection], [], [], 0.2)
            if readable:
                answer = connection.recv(65536)
                break
            connection.sendall(b"{")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"API_BODY_TIMEOUT" in answer
    assert time.monotonic() - started < 3


def test_the_key_is_checked_before_the_body_is_parsed(client: TestClient) -> None:
    response = client.post(
        "/notifications", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_wrong_key_is_refused_before_the_body_is_parsed(client: TestClient) -> None:
    response = client.post("/notifications", content=b"{not json", headers=auth("wrong-key-0123456789"))

    assert response.status_code == 401


def test_a_declared_length_over_max_request_bytes_is_413(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, MAX_REQUEST_BYTES="2048") as client:
        response = client.post("/notifications", content=b"x" * 2049, headers=auth())

    assert response.status_code == 413
    assert "MAX_REQUEST_BYTES" in response.json()["detail"]


def test_invalid_input_is_not_echoed_in_the_422(client: TestClient) -> None:
    bogus = "not-an-address-" + "y" * 1000
    body = {"to": [bogus] * 200, "subject": "s", "body": "b"}

    response = client.post("/notifications", json=body, headers=auth())

    assert response.status_code == 422
    assert "yyyy" not in response.text
    assert len(response.content) < 5000
    assert {"type", "loc", "msg"} == set(response.json()["detail"][0])


def test_to_and_cc_have_a_static_length_limit(client: TestClient) -> None:
    body = {"to": ["a@example.com"], "cc": ["b@example.com"] * 1001, "subject": "s", "body": "b"}

    response = client.post("/notifications", json=body, headers=auth())

    assert response.status_code == 422
    assert [error["type"] for error in response.json()["detail"]] == ["too_long"]
