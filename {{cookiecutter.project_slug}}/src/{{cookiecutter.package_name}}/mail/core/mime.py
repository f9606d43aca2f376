"""The bytes of a message on the wire: every header line is a real header line, and text reads back as it was.

compat32 (the policy of fastapi-mail's messages) folds a header on every `str.splitlines()`
boundary, so a VT or FS in a long subject would start a new header line. `serialize` checks
each folded header: the only line break in it is the folding one, followed by white space;
no control character; no line over RFC 5322's 998 characters (a long word is re-encoded as
RFC 2047 encoded words, which may be split anywhere). Anything else is refused (`ValueError`).
With SMTPUTF8, address headers with a non-ASCII local part go out as UTF-8 (RFC 6532).

A subject (or Comments: the text headers readers show) must read back as written. compat32 would send a
literal "=?utf-8?q?...?=" as it is (every reader decodes it into something else) and fold a long
first word onto a line of its own after an empty first line (read back with a leading space). Here
such text is folded only at its own white space, the first word always on the first line, and
written as encoded words when plain text cannot carry it: not ASCII, "=?" inside, white space first,
or a word too long for a line.
"""

from __future__ import annotations

import io
import re
import uuid
from email.charset import Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32
from typing import Any

from aiosmtplib.email import flatten_message

from .addresses import ADDRESS_HEADERS
from .headers import header_problem

__all__ = ["MAX_LINE", "drop_multipart_encodings", "serialize", "single_message_id"]

MAX_LINE = 998
"""RFC 5322 2.1.1: at most 998 characters per line, without the CRLF."""

_UTF8 = Charset("utf-8")
_TEXT_HEADERS = frozenset({"subject", "comments"})
"""Unstructured headers whose text readers show (RFC 5322 3.6.5), and decode when it holds encoded words."""
_TOKENS = re.compile(r"[ \t]*[^ \t]+|[ \t]+$")
"""A word with the white space before it, or the white space that ends the value."""


class _SmtpPolicy(Compat32):
    """compat32 that can only fold headers into real header lines (see the module docstring).

    A value with a control character, line break or lone surrogate is refused before folding;
    the folded bytes are checked again.

    It also has a fast path for plain short headers: compat32 runs every header through
    `email.header.Header`, which returns a short ASCII value unchanged at a cost of several
    microseconds each.
    """

    utf8 = False
    """Write non-ASCII address headers as UTF-8 (the message goes out with SMTPUTF8)."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        linesep = self.linesep
        if isinstance(value, str):
            problem = header_problem(value)
            if problem is not None:
                raise ValueError(f"the {name} header {problem}")
            if (
                value.isascii()
                and len(name) + len(value) + 2 <= (self.max_line_length or 0)
                and "=?" not in value
                and not value.startswith((" ", "\t"))
            ):
                return f"{name}: {value}{linesep}".encode("ascii")
            if name.lower() in _TEXT_HEADERS:
                return _checked(name, _fold_text(name, value, linesep, self.max_line_length or 78), linesep)
            if self.utf8 and not value.isascii() and name.title() in ADDRESS_HEADERS:
                folded = f"{name}: {f',{linesep} '.join(value.split(', '))}{linesep}".encode()
                return _checked(name, folded, linesep)
        folded = super().fold_binary(name, value)
        if isinstance(value, str) and _longest_line(folded, linesep) > MAX_LINE:
            words = Header(value, charset=_UTF8, header_name=name)
            folded = f"{name}: {words.encode(linesep=linesep, maxlinelen=78)}{linesep}".encode("ascii")
        return _checked(name, folded, linesep)


class _SmtpUtf8Policy(_SmtpPolicy):
    utf8 = True


_SMTP_POLICY = _SmtpPolicy(cte_type="7bit")
_SMTPUTF8_POLICY = _SmtpUtf8Policy(cte_type="7bit")


def _fold_text(name: str, value: str, linesep: str, width: int) -> bytes:
    """`name: value` folded only before its own white space (unfolding gives `value` back), each line at
    most `width` characters unless a word is longer; RFC 2047 encoded words when plain text cannot carry it."""
    if value.isascii() and "=?" not in value and value[:1] not in ("", " ", "\t"):
        first, *others = _TOKENS.findall(value)
        lines, line = [], f"{name}: {first}"
        for token in others:
            if len(line) + len(token) > width and not token.isspace():
                lines.append(line)
                line = token
            else:
                line += token
        lines.append(line)
        if max(len(each) for each in lines) <= MAX_LINE:
            return (linesep.join(lines) + linesep).encode("ascii")
    words = Header(value, charset=_UTF8, header_name=name).encode(linesep=linesep, maxlinelen=width)
    return f"{name}: {words}{linesep}".encode("ascii")


def _longest_line(folded: bytes, linesep: str) -> int:
    return max(len(line) for line in folded.split(linesep.encode()))


def _checked(name: str, folded: bytes, linesep: str) -> bytes:
    """`folded` when each of its lines is the header's first line or a folded continuation."""
    try:
        text = folded.decode()
    except UnicodeDecodeError:
        raise ValueError(f"the {name} header is not valid UTF-8") from None
    for number, line in enumerate(text.splitlines(keepends=True)):
        content = line.removesuffix(linesep)
        problem = header_problem(content) if line.endswith(linesep) else "must not contain a line break"
        if problem is None and number > 0 and not content.startswith((" ", "\t")):
            problem = "must not contain a line break"
        if problem is None and len(content.encode()) > MAX_LINE:
            problem = f"makes a line longer than {MAX_LINE} characters"
        if problem is not None:
            raise ValueError(f"the {name} header {problem}")
    return folded


def drop_multipart_encodings(message: Message) -> Message:
    """Remove Content-Transfer-Encoding from multipart containers; returns `message`.

    fastapi-mail sets a charset on its multipart containers, which also labels them
    `base64`; RFC 2045 allows only 7bit, 8bit or binary there, and strict readers object.
    """
    for part in message.walk():
        if part.is_multipart():
            del part["Content-Transfer-Encoding"]
    return message


def serialize(message: Message, *, utf8: bool = False) -> bytes:
    """The bytes to transmit for `message`: no Bcc header, 7-bit clean. Changes `message`.

    With `utf8`, non-ASCII address headers are written as UTF-8 (for SMTPUTF8).
    Byte for byte what `aiosmtplib.email.flatten_message(message, cte_type="7bit")` gives for
    well-formed headers, at a third of the cost: each multipart without a boundary gets a random
    122-bit one ("=_" + hex, which base64 and quoted-printable never produce and no text can
    guess), so the generator does not compile a regular expression per boundary to search the text for it.
    Raises `ValueError` for a header that would not fold into real header lines.
    """
    if not isinstance(message.policy, Compat32):
        return flatten_message(message, utf8=utf8, cte_type="7bit")
    del message["Bcc"]
    del message["Resent-Bcc"]
    for part in message.walk():
        if part.is_multipart() and part.get_boundary() is None:
            part.set_boundary(f"=_{uuid.uuid4().hex}")
    with io.BytesIO() as buffer:
        BytesGenerator(buffer, policy=_SMTPUTF8_POLICY if utf8 else _SMTP_POLICY).flatten(message)
        return buffer.getvalue()


def single_message_id(message: Message) -> Message:
    """Keep only the first Message-ID header (fastapi-mail adds one from `headers` a second time); returns `message`."""
    first, *others = message.get_all("Message-ID") or [""]
    if others:
        del message["Message-ID"]
        message["Message-ID"] = first
    return message
