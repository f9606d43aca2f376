"""The bytes of a message on the wire: every header line is a real header line.

compat32 (the policy of fastapi-mail's messages) folds a header on every `str.splitlines()`
boundary, so a VT or FS in a long subject would start a new header line. `serialize` checks
each folded header: the only line break in it is the folding one, followed by white space;
no control character; no line over RFC 5322's 998 characters (a long word is re-encoded as
RFC 2047 encoded words, which may be split anywhere). Anything else is refused (`ValueError`).

International addresses: IDN domains are written in punycode, so SMTPUTF8 is needed only
for a non-ASCII local part; then those address headers go out as UTF-8 (RFC 6532).
"""

from __future__ import annotations

import io
import uuid
from email.charset import Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32
from email.utils import formataddr, getaddresses
from typing import Any

from aiosmtplib.email import flatten_message
from fastapi_mail import MessageSchema
from pydantic import NameEmail

from .headers import header_problem

__all__ = [
    "ascii_domain",
    "ascii_domains",
    "drop_multipart_encodings",
    "international_addresses",
    "serialize",
]

MAX_LINE = 998
"""RFC 5322 2.1.1: at most 998 characters per line, without the CRLF."""

ADDRESS_HEADERS = ("From", "Sender", "To", "Cc", "Bcc", "Reply-To")
_UTF8 = Charset("utf-8")


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
            if value.isascii() and len(name) + len(value) + 2 <= (self.max_line_length or 0):
                return f"{name}: {value}{linesep}".encode("ascii")
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


def ascii_domain(address: str) -> str:
    """`address` with an international domain in punycode ("user@xn--bcher-kva.example")."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise ValueError(f"the domain of {address!r} is not a valid international domain name") from None


def ascii_domains(message: MessageSchema, sender: str) -> MessageSchema:
    """`message` with every address's international domain in punycode, before fastapi-mail builds it.

    `sender` is the configured MAIL_FROM, used when the message names no sender (pydantic's
    email validation turns a punycode domain back into Unicode, so it is converted here).

    An address whose local part stays non-ASCII loses its display name: fastapi-mail cannot
    format it with one, and a name pydantic made up from the local part says nothing.
    """

    def convert(address: NameEmail) -> NameEmail:
        converted = ascii_domain(address.email)
        if converted == address.email:
            return address
        name = address.name if converted.isascii() and address.name != address.email else converted
        return NameEmail(name=name, email=converted)

    fields = ("recipients", "cc", "bcc", "reply_to")
    from_email = str(message.from_email or sender)
    if from_email.isascii() and all(
        address.email.isascii() for field in fields for address in getattr(message, field)
    ):
        return message
    update: dict[str, object] = {
        field: [convert(each) for each in getattr(message, field)] for field in fields
    }
    return message.model_copy(update={**update, "from_email": ascii_domain(from_email)})


def international_addresses(message: Message) -> Message:
    """Rewrite non-ASCII address headers of `message`, one address at a time; returns `message`.

    Domains become punycode; display names become encoded words; a non-ASCII local part
    stays as it is (it needs SMTPUTF8).
    """
    for name in ADDRESS_HEADERS:
        value = message.get(name)
        if not isinstance(value, str) or value.isascii():
            continue
        addresses = []
        for display, address in getaddresses([value]):
            address = ascii_domain(address)
            if address.isascii():
                addresses.append(formataddr((display, address), charset=_UTF8))
            elif display:
                addresses.append(f"{_UTF8.header_encode(display)} <{address}>")
            else:
                addresses.append(address)
        message.replace_header(name, ", ".join(addresses))
    return message


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
