"""The doctor's raw side connections and look-ups: they tell a wrong port or TLS mode, a silent host or a
dropped connection apart, and never log in. Each waits a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from ..core.settings import SmtpSettings
from ..core.sockets import abort
from .diagnosis import Found, Problem

__all__ = ["RAW_WAIT", "addresses", "in_daemon_thread", "plain_greeting", "resolve", "tcp_connects"]

T = TypeVar("T")

RAW_WAIT = 1.0
"""Seconds a diagnostic second connection waits at most (a plain greeting; a TCP connect: MAIL_TIMEOUT / 2)."""


async def in_daemon_thread(function: Callable[[], T], name: str) -> T:
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


async def addresses(settings: SmtpSettings) -> list[str]:
    """The addresses of MAIL_SERVER, looked up in a daemon thread (the caller bounds the time)."""

    def lookup() -> list[str]:
        infos = socket.getaddrinfo(settings.server, settings.port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    return await in_daemon_thread(lookup, "mail-probe-dns")


async def resolve(settings: SmtpSettings) -> None:
    """Diagnose a MAIL_SERVER that does not resolve within MAIL_TIMEOUT before connecting.

    aiosmtplib resolves in the default executor, which `asyncio.run` waits for: a resolver that
    hangs would hold `check-mail` past its bound. Looked up here first, it never reaches aiosmtplib.
    """
    try:
        async with asyncio.timeout(settings.timeout):
            await addresses(settings)
    except TimeoutError:
        raise Found(
            Problem.DNS_FAILURE,
            f"MAIL_SERVER={settings.server} did not resolve within {settings.timeout:g} s",
            "this machine's DNS server does not answer: check /etc/resolv.conf or the network",
        ) from None
    except OSError as error:
        raise Found(
            Problem.DNS_FAILURE,
            f"MAIL_SERVER={settings.server} does not resolve ({error.strerror or error})",
            "check the spelling of MAIL_SERVER (your provider's SMTP host name) and this machine's DNS",
        ) from None


async def _open_raw(
    settings: SmtpSettings, wait: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A plain TCP connection to MAIL_SERVER within `wait` seconds, else None."""
    with contextlib.suppress(OSError):  # TimeoutError too
        async with asyncio.timeout(wait):
            for address in await addresses(settings):
                with contextlib.suppress(ConnectionError):  # the next address may answer
                    return await asyncio.open_connection(address, settings.port)
    return None


async def tcp_connects(settings: SmtpSettings, wait: float) -> bool:
    """Whether MAIL_SERVER accepts a TCP connection on MAIL_PORT within `wait` seconds."""
    opened = await _open_raw(settings, wait)
    if opened is not None:
        await _abort(opened[1])
    return opened is not None


async def plain_greeting(settings: SmtpSettings) -> str:
    """The first line a fresh connection receives if the port speaks plain SMTP, else ''."""
    opened = await _open_raw(settings, RAW_WAIT)
    if opened is None:
        return ""
    reader, writer = opened
    try:
        async with asyncio.timeout(RAW_WAIT):
            line = (await reader.readline()).decode("ascii", "replace").strip()
    except (OSError, ValueError):  # TimeoutError is an OSError: nothing came
        return ""
    finally:
        await _abort(writer)
    return line if line[:3].isdigit() else ""


async def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once, and let the loop release its socket before returning."""
    abort(writer.transport)
    await asyncio.sleep(0)
