"""One SMTP mail transaction (MAIL, RCPT, DATA) where the reply to the final "." has its own timeout.

RFC 5321 4.5.3.2 gives the server 10 minutes to answer the end of the data: it may be
scanning the message. aiosmtplib's `sendmail` bounds every step by one timeout and cannot
tell a timeout before the data was sent from one after it. Here each command waits
`smtp.timeout`; the final reply waits `data_timeout`, and a timeout or lost connection
after the data was sent raises `DeliveryOutcomeUnknownError`: the server may have accepted
the message, or not. While it waits for that reply, the server holds the message: cutting the
wait short (cancelling) leaves the outcome unknown too, so the caller can see that wait (`waiting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, cast

import aiosmtplib
from aiosmtplib.email import parse_address

from .errors import DeliveryOutcomeUnknownError, PermanentMailError
from .session import greet

__all__ = ["MessageTooLargeError", "transact"]

_START_INPUT = 354
_COMPLETED = 250
_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
_TOO_LARGE = 552
_WRITE_SLICE = 256 * 1024


class MessageTooLargeError(PermanentMailError):
    """The message is larger than the server's advertised SIZE: it would be refused on every attempt."""


def _crlf(data: bytes | bytearray) -> bytes | bytearray:
    """`data` with CRLF line ends; `data` itself when it has them already (counting is cheaper than copying)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data
    return _LINE_END.sub(b"\r\n", data)


async def _write(protocol: Any, payload: bytes | bytearray) -> None:
    """Write `payload` in slices, each after the transport drained the last (flow control), so that TLS and the
    socket buffer hold about a slice of a large message, not a copy of all of it. A connection lost meanwhile
    raises `ConnectionResetError`: the message did not go out."""
    view = memoryview(payload)
    for start in range(0, len(view), _WRITE_SLICE):
        protocol.write(cast(bytes, view[start : start + _WRITE_SLICE]))  # the transport takes any bytes-like
        await protocol._drain_helper()  # aiosmtplib's StreamWriter.drain(): returns at once unless paused


def _check_size(smtp: aiosmtplib.SMTP, size: int, action: str) -> None:
    """Raise `MessageTooLargeError` when the server advertises a SIZE limit below `size`."""
    limit = smtp.esmtp_extensions.get("size", "")
    if limit.isdigit() and 0 < int(limit) < size:
        raise MessageTooLargeError(
            f"{action} failed: the message is {size} bytes, over the {int(limit)} bytes the server accepts "
            "(its SIZE); send smaller or fewer attachments",
            reply_code=_TOO_LARGE,
        )


async def transact(
    smtp: aiosmtplib.SMTP,
    sender: str,
    recipients: tuple[str, ...],
    data: bytes | bytearray,
    *,
    mail_options: tuple[str, ...],
    data_timeout: float,
    action: str,
    waiting: set[asyncio.Task[Any]],
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """Send `data` from `sender` to `recipients` on the connected `smtp`.

    Returns the refused recipients and the server's reply to the end of the data ("250 2.0.0 queued as ...").
    `waiting` holds the current task while it waits for that reply.

    Raises what aiosmtplib raises before the data was sent (an RSET follows a refusal), and
    `DeliveryOutcomeUnknownError` (naming `action`) when no reply to the data came.
    """
    for address in (sender, *recipients):
        parse_address(address)  # refuses an address unsafe on a command line, before anything is sent
    if smtp.is_ehlo_or_helo_needed:
        await greet(smtp)
    utf8 = "SMTPUTF8" in mail_options
    if utf8 and not smtp.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    payload = _crlf(data)
    if not payload.endswith(b"\r\n"):
        payload = payload + b"\r\n"
    options = list(mail_options)
    if smtp.supports_extension("size"):
        _check_size(smtp, len(payload), action)
        options.insert(0, f"SIZE={len(payload)}")
    encoding = "utf-8" if utf8 else "ascii"
    refused: dict[str, aiosmtplib.SMTPResponse] = {}
    try:
        await smtp.mail(sender, options=options, encoding=encoding)
        for recipient in recipients:
            try:
                await smtp.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as refusal:
                refused[recipient] = aiosmtplib.SMTPResponse(refusal.code, refusal.message)
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(
                [
                    aiosmtplib.SMTPRecipientRefused(r.code, r.message, address)
                    for address, r in refused.items()
                ]
            )
        start = await smtp.execute_command(b"DATA")
        if start.code != _START_INPUT:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPException):
            await smtp.rset()
        raise
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    if _LEADING_DOT.search(payload):  # RFC 5321 4.5.2 dot-stuffing (searching first spares a copy)
        payload = _LEADING_DOT.sub(b"..", payload)
    await _write(protocol, payload)
    protocol.write(b".\r\n")
    task = asyncio.current_task()
    if task is not None:
        waiting.add(task)
    try:
        reply = await protocol.read_response(timeout=data_timeout)
    except OSError as error:  # a timeout (TimeoutError) or a lost connection (ConnectionError)
        what = (
            f"no reply to the end of the message within {data_timeout:g} s (MAIL_DATA_TIMEOUT)"
            if isinstance(error, TimeoutError)
            else "the connection was lost before the server answered the end of the message"
        )
        raise DeliveryOutcomeUnknownError(
            f"{action}: {what}; the server may have accepted it or not (outcome unknown)"
        ) from error
    finally:
        if task is not None:
            waiting.discard(task)
    if reply.code != _COMPLETED:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return refused, f"{reply.code} {reply.message}"
