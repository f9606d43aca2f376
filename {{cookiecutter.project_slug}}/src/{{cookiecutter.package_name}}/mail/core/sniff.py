"""Does a port speak TLS from the first byte? A quick look on a second connection.

A client that expects a plain SMTP greeting (STARTTLS, or no TLS) waits in vain on an
implicit-TLS port: the server waits for the client's TLS hello. Instead of timing out, a
client can send a TLS ClientHello on a second connection and see whether a TLS record comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiosmtplib

from .errors import PermanentMailError
from .sockets import abort

__all__ = ["SNIFF_AFTER", "ImplicitTlsPortError", "client_hello", "connect", "looks_like_tls", "speaks_tls"]

SNIFF_AFTER = 1.0
"""Seconds without a greeting before looking whether the port wants TLS."""


class ImplicitTlsPortError(PermanentMailError):
    """The port speaks TLS from the first byte, but the settings expect a plain SMTP greeting."""

    failure = "tls"


def client_hello(server_name: str) -> bytes:
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


def looks_like_tls(header: bytes) -> bool:
    """A TLS record header: handshake (22) or alert (21), protocol version 3.x."""
    return len(header) >= 2 and header[0] in (21, 22) and header[1] == 3


async def speaks_tls(host: str, port: int, server_name: str) -> bool:
    """Whether `host`:`port` answers a TLS ClientHello with a TLS record (the caller bounds the time)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(client_hello(server_name))
        return looks_like_tls(await reader.readexactly(2))
    except (OSError, asyncio.IncompleteReadError):
        return False
    finally:
        abort(writer.transport)
        await asyncio.sleep(0)  # let the loop release the socket


async def connect(smtp: aiosmtplib.SMTP, where: str, *, sniff_after: float = SNIFF_AFTER) -> None:
    """`smtp.connect()` for a session that expects a plain greeting (STARTTLS, or no TLS).

    When no greeting came within `sniff_after` seconds and the port turns out to speak TLS
    from the first byte, raises `PermanentMailError` naming the settings to change, instead
    of waiting for the timeout (and retrying).
    """
    connecting = asyncio.ensure_future(smtp.connect())
    try:
        done, _ = await asyncio.wait({connecting}, timeout=sniff_after)
        if not done:
            sniff = asyncio.ensure_future(
                speaks_tls(smtp.hostname or "", smtp.port or 0, smtp.hostname or "")
            )
            try:
                await asyncio.wait({connecting, sniff}, return_when=asyncio.FIRST_COMPLETED)
                if not connecting.done() and sniff.done() and sniff.result():
                    raise ImplicitTlsPortError(
                        f"connect to {where} failed: the server speaks TLS from the first byte (implicit TLS) "
                        "but MAIL_SSL_TLS=false expects a plain SMTP greeting: set MAIL_SSL_TLS=true and "
                        "MAIL_STARTTLS=false for this port, or use the STARTTLS port (usually 587)"
                    )
            finally:
                sniff.cancel()
                await asyncio.gather(sniff, return_exceptions=True)
        await connecting
    finally:
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
