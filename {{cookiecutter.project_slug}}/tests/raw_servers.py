"""Raw TCP servers that misbehave on purpose: silent, hanging up, or following a fixed SMTP script.

Every script returns when the client hangs up, so `wait_idle()` proves the client closed its sockets.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Script = Callable[[socket.socket], None]


class ScriptedListener:
    """Listens on 127.0.0.1 and runs `script(connection)` in a thread for each connection."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._stopping = False
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            if self._stopping:
                connection.close()
                return
            self.connections += 1
            self._open.append(connection)
            thread = threading.Thread(target=self._run, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)  # started first: wait_idle may join it at once

    def _run(self, connection: socket.socket) -> None:
        with suppress(OSError):  # the client hung up mid-script: that is what these servers are for
            self._script(connection)

    def wait_idle(self, timeout: float) -> bool:
        """Whether the client closed every connection so far within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        self._stopping = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes accept()
        self._acceptor.join()
        self._listener.close()
        for connection in self._open:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes a script blocked in recv()
            connection.close()
        for thread in self._threads:
            thread.join()


@contextmanager
def listening(script: Script) -> Iterator[ScriptedListener]:
    """Run a `ScriptedListener` for the duration of the block."""
    listener = ScriptedListener(script)
    try:
        yield listener
    finally:
        listener.stop()


def silent(connection: socket.socket) -> None:
    """Accepts and never says anything."""
    while connection.recv(4096):
        pass


def hang_up(connection: socket.socket) -> None:
    """Closes the connection at once."""
    connection.shutdown(socket.SHUT_RDWR)


ACCEPTING = ("220 x\r\n", "250 x\r\n", "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "250 2.0.0 ok\r\n")
"""A plain server's greeting and its answers to EHLO, MAIL FROM, RCPT TO and RSET: the probe's whole dialogue."""


def smtp_script(greeting: str, *replies: str) -> Script:
    """Sends `greeting`, answers each line the client sends with the next reply, then goes quiet.

    A reply of "" hangs up instead.
    """

    def script(connection: socket.socket) -> None:
        connection.sendall(greeting.encode())
        with connection.makefile("rb") as lines:
            for reply in replies:
                if not lines.readline():
                    return
                if not reply:
                    connection.shutdown(socket.SHUT_RDWR)
                    return
                connection.sendall(reply.encode())
            for _ in lines:
                pass

    return script


@contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full, so a new connection hangs (Linux drops its SYNs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            yield port
