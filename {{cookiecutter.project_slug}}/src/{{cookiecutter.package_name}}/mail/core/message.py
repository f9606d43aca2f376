"""From a fastapi-mail `MessageSchema` to an `Envelope`: the sender, the recipients and the bytes to send.

fastapi-mail builds the MIME message (templates, attachments, headers), once per message; here it
gets a Message-ID on MAIL_FROM's domain (fastapi-mail's would name this machine, `@localhost` in a
container), addresses as `addresses.outgoing_addresses` makes them, and is flattened to the exact
bytes every attempt sends (signed, when a signer is given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import make_msgid
from pathlib import Path

from aiosmtplib.email import extract_recipients, extract_sender
from fastapi_mail import ConnectionConfig, FastMail, MessageSchema
from pydantic import SecretStr

from .addresses import ascii_domain, international_addresses, outgoing_addresses
from .errors import printable
from .mime import drop_multipart_encodings, serialize, single_message_id
from .parts import Attachment, add_parts, splice
from .settings import SmtpSettings

__all__ = ["NOTIFICATION_ID_HEADER", "Envelope", "MessageBuilder", "connection_config"]

NOTIFICATION_ID_HEADER = "X-Notification-ID"
"""The header whose value names a message in log lines and errors (else its Message-ID)."""

_LISTED_RECIPIENTS = 3

Sign = Callable[[bytes], bytes]
"""Turns the serialized message into the bytes sent (DKIM signing adds its header)."""


@dataclass(frozen=True)
class Envelope:
    """A message built once and flattened to the bytes every attempt sends.

    `recipients` are the addresses as sent (international domains as A-labels); `named` maps those that
    differ to the address the caller gave (`recipients=` of `send`).
    """

    message_id: str
    notification_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes | bytearray
    """A bytearray when attachments were spliced in (no second copy of a large message)."""
    mail_options: tuple[str, ...]
    named: Mapping[str, str] = field(default_factory=dict)

    def given(self, address: str) -> str:
        """`address` (one of `recipients`) as the caller gave it."""
        return self.named.get(address, address)

    @property
    def subject(self) -> str:
        """What log lines call the message: its notification id when it has one, else its Message-ID."""
        if self.notification_id:
            return f"notification {self.notification_id} ({self.message_id})"
        return self.message_id

    @property
    def action(self) -> str:
        """ "sending <subject> to <the first recipients>", for error messages."""
        listed = ", ".join(self.recipients[:_LISTED_RECIPIENTS])
        more = len(self.recipients) - _LISTED_RECIPIENTS
        return f"sending {self.subject} to {listed}" + (f" and {more} more" if more > 0 else "")


def connection_config(
    settings: SmtpSettings,
    *,
    username: str = "",
    password: SecretStr | None = None,
    use_credentials: bool = False,
    template_folder: Path | None = None,
) -> ConnectionConfig:
    """`settings` as a `fastapi_mail.ConnectionConfig`, with the login given."""
    return ConnectionConfig(
        MAIL_USERNAME=username,
        MAIL_PASSWORD=password or SecretStr(""),
        MAIL_PORT=settings.port,
        MAIL_SERVER=settings.server,
        MAIL_STARTTLS=settings.starttls,
        MAIL_SSL_TLS=settings.ssl_tls,
        MAIL_FROM=settings.from_address,
        MAIL_FROM_NAME=settings.from_name or None,
        USE_CREDENTIALS=use_credentials,
        VALIDATE_CERTS=settings.validate_certs,
        CERT_BUNDLE=str(settings.cert_bundle) if settings.cert_bundle else None,
        TIMEOUT=math.ceil(settings.timeout),
        TEMPLATE_FOLDER=template_folder,
        SUPPRESS_SEND=0,
        MAIL_DEBUG=0,
    )


class MessageBuilder:
    """Builds `Envelope`s from `MessageSchema`s for MAIL_FROM (with fastapi-mail), signed by `sign`."""

    def __init__(self, settings: SmtpSettings, sign: Sign | None = None) -> None:
        self._sender = str(settings.from_address)
        self._domain = self._sender.rpartition("@")[2]
        self._fastmail = FastMail(connection_config(settings))
        self._sign = sign

    async def build(
        self,
        message: MessageSchema,
        only: Sequence[str] | None = None,
        *,
        attachments: Sequence[Attachment] = (),
    ) -> Envelope:
        """The envelope of `message`, to all its To, Cc and Bcc addresses or `only` to those given (their
        international domains as A-labels, as in the headers, so an ASCII local part needs no SMTPUTF8).

        A Message-ID in `message.headers` is kept (the same on every attempt); otherwise one on MAIL_FROM's
        domain is made. `attachments` are added as parts (see `parts.add_parts`), encoded once.
        Raises what fastapi-mail or the serializer raised (`ValueError` for a header that cannot be sent).
        """
        message = outgoing_addresses(message, self._sender)
        headers = dict(message.headers or {})
        given = [headers.pop(name) for name in list(headers) if name.lower() == "message-id"]
        headers["message-id"] = given[0] if given else make_msgid(domain=self._domain)  # fastapi-mail's key
        message = message.model_copy(update={"headers": headers})
        built = await self._fastmail.get_message(message)
        mime = international_addresses(
            single_message_id(drop_multipart_encodings(built[0] if isinstance(built, list) else built))
        )
        mime, contents = add_parts(mime, attachments) if attachments else (mime, {})
        sender = extract_sender(mime)
        as_given = tuple(extract_recipients(mime)) if only is None else tuple(only)
        recipients = tuple(ascii_domain(address) for address in as_given)
        if not sender or not recipients:
            raise ValueError("the message needs a sender and at least one recipient")
        utf8 = not all(address.isascii() for address in (sender, *recipients))
        data: bytes | bytearray = serialize(mime, utf8=utf8)
        if contents:
            data = splice(bytes(data), contents)
        if self._sign is not None:
            data = self._sign(bytes(data))
        return Envelope(
            message_id=str(mime.get("Message-ID", "")),
            notification_id=printable(str(mime.get(NOTIFICATION_ID_HEADER, ""))),
            sender=sender,
            recipients=recipients,
            data=data,
            mail_options=("SMTPUTF8",) if utf8 else (),
            named={sent: name for sent, name in zip(recipients, as_given, strict=True) if sent != name},
        )
