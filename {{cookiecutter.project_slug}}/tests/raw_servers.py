"""Raw TCP servers that misbehave on purpose: silent, hanging up, or following a fixed SMTP script."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Script = Callable[[socket.socket, threading.Event], None]


class ScriptedListener:
    """Listens on 127.0.0.1 and runs `script(connection, stopped)` in a thread for each connection."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._stopped = threading.Event()
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            if self._stopped.is_set():
                connection.close()
                return
            self.connections += 1
            self._open.append(connection)
            thread = threading.Thread(target=self._run, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, connection: socket.socket) -> None:
        try:
            self._script(connection, self._stopped)
        except OSError:
            pass  # the client hung up: that is what these servers are for

    def stop(self) -> None:
        self._stopped.set()
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes accept()
        self._acceptor.join()
        self._listener.close()
        for connection in self._open:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
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


def silent(connection: socket.socket, stopped: threading.Event) -> None:
    """Accepts and never says anything."""
    stopped.wait()


def hang_up(connection: socket.socket, stopped: threading.Event) -> None:
    """Closes the connection at once."""
    connection.shutdown(socket.SHUT_RDWR)


def smtp_script(greeting: str, *replies: str) -> Script:
    """Sends `greeting`, then answers each line the client sends with the next reply, then goes quiet.

    A reply of "" closes the connection instead.
    """

    def script(connection: socket.socket, stopped: threading.Event) -> None:
        connection.sendall(greeting.encode())
        with connection.makefile("rb") as lines:
            for reply in replies:
                if not lines.readline():
                    return
                if not reply:
                    connection.shutdown(socket.SHUT_RDWR)
                    return
                connection.sendall(reply.encode())
        stopped.wait()

    return script


@contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full, so new connections hang in SYN_SENT (Linux drops the SYNs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            yield port
