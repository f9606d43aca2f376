"""Request limits on a real uvicorn: key before body, 413 before reading, 408 for slow clients, lean 422s."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.store import StoreSettings

from .conftest import API_KEY, auth, migrate, service
from .smtp_server import SmtpServer

HUNDRED_MB = 100 * 1024 * 1024
CHUNK = b"x" * 65536
FRAMED_CHUNK = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)


@dataclass
class Uvicorn:
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def uvicorn_server(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Uvicorn]:
    """The service on a real uvicorn in a thread; API_BODY_TIMEOUT is 1 s."""
    monkeypatch.setenv("API_KEYS", API_KEY)
    monkeypatch.setenv("API_BODY_TIMEOUT", "1")
    migrate(StoreSettings().database_url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Uvicorn(port)
    server.should_exit = True
    thread.join(10)


def request_head(*, key: str | None, length: int | None) -> bytes:
    lines = ["POST /notifications HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
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
                sent += connection.send(chunk)
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
