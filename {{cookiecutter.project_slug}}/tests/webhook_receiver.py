"""An app's endpoint for outgoing events, as a user would write one: it verifies each request with the
standardwebhooks package and keeps what it took; it can be down (port closed) and slow to answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from {{ cookiecutter.package_name }}.devsmtp import free_port


@dataclass
class Receiver:
    """What the endpoint took: (webhook-id, payload) in arrival order; `refused` counts bad signatures."""

    secret: str
    port: int = field(default_factory=free_port)
    hold: float = 0.0
    """Seconds to wait after taking a request before answering it."""
    taken: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refused: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mail"

    def ids(self) -> list[str]:
        return [webhook_id for webhook_id, _ in self.taken]

    def wait_for(self, count: int, timeout: float = 20) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len({webhook_id for webhook_id, _ in self.taken}) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.taken)} event(s) arrived, not {count}: {self.taken}")
            time.sleep(0.05)
        return self.taken

    def start(self) -> None:
        """Listen on `port` (again, after `stop`)."""
        receiver, verifier = self, Webhook(self.secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    payload = verifier.verify(body, dict(self.headers))
                except Exception:
                    receiver.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.taken.append((self.headers["webhook-id"], payload))
                time.sleep(receiver.hold)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port: the service's requests are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def running_receiver(secret: str, *, started: bool = True) -> Iterator[Receiver]:
    receiver = Receiver(secret)
    if started:
        receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def payload_types(taken: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [json.dumps(payload["type"]).strip('"') for _, payload in taken]
