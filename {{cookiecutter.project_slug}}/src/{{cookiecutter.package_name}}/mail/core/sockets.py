"""Dropping a connection at once: one helper for SMTP sessions and raw side connections alike."""

from __future__ import annotations

import asyncio
import contextlib

import aiosmtplib

__all__ = ["abort", "drop"]


def abort(*transports: asyncio.BaseTransport | None) -> None:
    """Close each transport now, without a goodbye (no QUIT, no TLS close_notify); never raises."""
    for transport in transports:
        # Aborting a TLS transport that already closed raises AttributeError on Python 3.11.
        with contextlib.suppress(Exception):
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
            elif transport is not None:
                transport.close()


def drop(smtp: aiosmtplib.SMTP, *transports: asyncio.BaseTransport | None) -> None:
    """Abort the socket of `smtp` (and `transports`, e.g. the plain one under its TLS) and reset `smtp`."""
    abort(*transports, smtp.transport)
    with contextlib.suppress(Exception):
        smtp.close()
