"""Addresses as they go out: international domains in punycode, no display name made up from a local part.

IDN domains are written as A-labels (punycode) in the headers and the envelope alike, so SMTPUTF8 is
needed only for a non-ASCII local part. They are converted by IDNA 2008 with UTS 46 non-transitional
mapping (the `idna` package, which email-validator brings), as browsers and registries do: Python's
own `idna` codec is IDNA 2003, which turns "straße.de" into "strasse.de", another domain.
"""

from __future__ import annotations

from email.charset import Charset
from email.message import Message
from email.utils import formataddr, getaddresses

import idna
from fastapi_mail import MessageSchema
from pydantic import NameEmail

__all__ = ["ADDRESS_HEADERS", "ascii_domain", "international_addresses", "outgoing_addresses"]

ADDRESS_HEADERS = ("From", "Sender", "To", "Cc", "Bcc", "Reply-To")
_UTF8 = Charset("utf-8")
_ADDRESS_FIELDS = ("recipients", "cc", "bcc", "reply_to")


def ascii_domain(address: str) -> str:
    """`address` with an international domain as its A-label ("user@xn--bcher-kva.example"; IDNA 2008, UTS 46)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True, transitional=False).decode('ascii')}"
    except UnicodeError:  # idna.IDNAError
        raise ValueError(f"the domain of {address!r} is not a valid international domain name") from None


def outgoing_addresses(message: MessageSchema, sender: str) -> MessageSchema:
    """`message` as it should be built: international domains in punycode, no made-up display names.

    pydantic's email validation names a bare address after its local part ("admin@example.com"
    becomes "admin <admin@example.com>"); such a name says nothing, so it is dropped. `sender` is
    the configured MAIL_FROM, used when the message names no sender (pydantic turns a punycode
    domain back into Unicode, so it is converted here). An address whose local part stays
    non-ASCII loses its display name too: fastapi-mail cannot format it with one.
    """

    def convert(address: NameEmail) -> NameEmail:
        converted = ascii_domain(address.email)
        invented = address.name in (address.email, address.email.rpartition("@")[0])
        if invented or not converted.isascii():
            return NameEmail(name=converted, email=converted)  # fastapi-mail writes a bare address
        return address if converted == address.email else NameEmail(name=address.name, email=converted)

    def unchanged(address: NameEmail) -> bool:
        return address.email.isascii() and address.name != address.email.rpartition("@")[0]

    from_email = str(message.from_email or sender)
    addresses = [address for field in _ADDRESS_FIELDS for address in getattr(message, field)]
    if from_email.isascii() and all(unchanged(address) for address in addresses):
        return message
    update: dict[str, object] = {
        field: [convert(each) for each in getattr(message, field)] for field in _ADDRESS_FIELDS
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
