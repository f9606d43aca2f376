"""Bounce messages as `DeliveryEvent`s: RFC 3464 delivery status notifications, and older text bounces.

A DSN (`multipart/report; report-type=delivery-status`) gives one event per recipient from its
`message/delivery-status` part: Action `failed` is a bounce (hard for a 5.x.x Status, soft for
4.x.x and for X.2.2, a full mailbox, which RFC 3463 calls a persistent transient failure),
`delayed` is deferred, `delivered` is delivered (`relayed` and `expanded` say nothing final and
give none). The returned message or headers (`message/rfc822`, `text/rfc822-headers`) give the
original Message-ID; the notification id comes from the VERP address the bounce was sent to (its
To, Delivered-To, X-Original-To, Postfix's X-Postfix-Sender) or from Original-Envelope-Id.

A message without a delivery-status part is handed to flufl.bounce (Mailman's detectors for qmail,
Exim, old Exchange and many more text formats): each address it finds gives a hard bounce (a
temporary failure: deferred) with no status and no diagnostic, matched only by VERP, since such a
bounce returns the original message as text, not as headers to read. A DSN is read from its own
part alone: its Action says what happened, where flufl.bounce's text heuristics could only guess.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import Header, decode_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from flufl.bounce import all_failures

from ..events import BounceKind, DeliveryEvent, EventType
from .verp import NOTIFICATION_ID, notification_id_from

__all__ = ["SOURCE", "read_report"]

SOURCE = "bounce_mailbox"
"""`DeliveryEvent.source` of every event read from the bounce mailbox."""

STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
DIAGNOSTIC_TYPE = re.compile(r"^[\w-]+\s*;\s*")
XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
MAX_TEXT = 1000
RETURNED_MESSAGE = {"message/rfc822", "message/global"}
RETURNED_HEADERS = {"text/rfc822-headers", "message/global-headers"}
VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To")


def read_report(raw: bytes, bounce_domain: str | None = None) -> list[DeliveryEvent]:
    """The events a bounce message reports, one per recipient; [] for a message that is no bounce.

    `bounce_domain` is BOUNCE_DOMAIN: VERP addresses on it name the notification (None: VERP is off).
    """
    message = message_from_bytes(raw)
    fields, blocks = _delivery_status(message)
    returned = _returned_headers(message)
    report = _Report(
        key=_one_line(message["Message-ID"]) or hashlib.sha256(raw).hexdigest(),
        notification_id=_notification_id(message, fields, bounce_domain),
        message_id=_one_line(returned["Message-ID"]) if returned is not None else "",
        date=_date(message["Date"]) or datetime.now(UTC),
    )
    if not blocks:  # no DSN: flufl.bounce's detectors know the text formats
        temporary, permanent = all_failures(message)
        hard = [
            report.event(address.decode("ascii"), EventType.BOUNCED, BounceKind.HARD)
            for address in sorted(permanent)
        ]
        later = [
            report.event(address.decode("ascii"), EventType.DEFERRED, None)
            for address in sorted(temporary - permanent)
        ]
        return hard + later
    events: list[DeliveryEvent] = []
    for block in blocks:
        recipient, status = _recipient(block), _status(block)
        found = _classify(_one_line(block["Action"]).lower(), status)
        if recipient and found is not None:
            diagnostic = DIAGNOSTIC_TYPE.sub("", _one_line(block["Diagnostic-Code"]))
            when = _date(block["Last-Attempt-Date"])
            events.append(report.event(recipient, *found, status=status, diagnostic=diagnostic, when=when))
    return events


@dataclass(frozen=True)
class _Report:
    """What every event of one bounce message shares."""

    key: str  # the bounce's own Message-ID, else a digest of it: one report, however often it is read
    notification_id: str | None
    message_id: str
    date: datetime

    def event(
        self,
        recipient: str,
        type_: EventType,
        kind: BounceKind | None,
        *,
        status: str = "",
        diagnostic: str = "",
        when: datetime | None = None,
    ) -> DeliveryEvent:
        key = f"{self.key}\n{recipient.lower()}\n{type_}".encode()
        return DeliveryEvent(
            type=type_,
            recipient=recipient,
            source=SOURCE,
            occurred_at=when or self.date,
            notification_id=self.notification_id,
            message_id=self.message_id or None,
            bounce=kind,
            status=status,
            diagnostic=diagnostic,
            event_id=hashlib.sha256(key).hexdigest()[:32],
        )


def _classify(action: str, status: str) -> tuple[EventType, BounceKind | None] | None:
    """The event an Action (and its Status) reports, or None for one that says nothing final."""
    if action.startswith(("failed", "error")):  # `error`: OpenSMTPD's non-standard word for failed
        persistent_transient = status.startswith("4.") or status.partition(".")[2] == "2.2"
        return EventType.BOUNCED, BounceKind.SOFT if persistent_transient else BounceKind.HARD
    if action.startswith("delayed"):
        return EventType.DEFERRED, None
    if action.startswith("delivered"):
        return EventType.DELIVERED, None
    return None


def _parts(message: Message) -> Iterator[Message]:
    """`message` and its parts, without descending into a returned message (a bounce of a bounce)."""
    yield message
    if message.get_content_maintype() == "multipart" and isinstance(message.get_payload(), list):
        for part in message.get_payload():
            if isinstance(part, Message):
                yield from _parts(part)


def _delivery_status(message: Message) -> tuple[Message, list[Message]]:
    """The per-message fields and the per-recipient blocks of the report's message/delivery-status parts."""
    fields, blocks = Message(), []
    for part in _parts(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _status_blocks(part):
            if "Action" in block:
                blocks.append(block)
            else:
                for name, value in block.items():
                    fields[name] = value
    return fields, blocks


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status part, its transfer encoding undone if it has one
    (the parser splits the blocks of the encoded text, which are none)."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, list):
        text = "".join(block.as_string() for block in payload if isinstance(block, Message))
    else:
        text = str(payload)
    if encoding == "base64":
        letters = re.sub(r"[^A-Za-z0-9+/]", "", text)
        try:
            data = base64.b64decode(letters + "=" * (-len(letters) % 4))
        except binascii.Error:
            return []
    else:
        data = quopri.decodestring(text.encode("utf-8", "surrogateescape"))
    chunks = re.split(r"\r?\n[ \t]*\r?\n", data.decode("utf-8", "replace"))
    return [HeaderParser().parsestr(chunk.strip("\r\n")) for chunk in chunks if chunk.strip()]


def _returned_headers(message: Message) -> Message | None:
    """The headers of the returned original message, if the bounce carries them."""
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type in RETURNED_MESSAGE:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif content_type in RETURNED_HEADERS:
            return HeaderParser().parsestr(_decoded(part))
    return None


def _notification_id(message: Message, fields: Message, bounce_domain: str | None) -> str | None:
    """The notification id from Original-Envelope-Id (a bare id or VERP), else the VERP address bounced to."""
    envelope_id = XTEXT.sub(lambda hex_: chr(int(hex_[1], 16)), _one_line(fields["Original-Envelope-Id"]))
    if NOTIFICATION_ID.fullmatch(envelope_id.lower()):
        return envelope_id.lower()
    if bounce_domain is None:
        return None
    candidates = [envelope_id, DIAGNOSTIC_TYPE.sub("", _one_line(fields["X-Postfix-Sender"]))]
    candidates += [address for _, address in getaddresses([_text(v) for v in _all(message, VERP_HEADERS)])]
    return next(
        (found for address in candidates if (found := notification_id_from(address, bounce_domain))), None
    )


def _recipient(block: Message) -> str:
    """The address the message was sent to: Original-Recipient if given, else Final-Recipient."""
    for name in ("Original-Recipient", "Final-Recipient"):
        value = _one_line(block[name])
        kind, separator, address = value.partition(";")
        if separator and kind.strip().lower() != "rfc822":
            continue  # an address of another type (x400, utf-8 is RFC 6533's own) is not one we sent to
        found = parseaddr(address if separator else value)[1]
        if "@" in found:
            return found
    return ""


def _status(block: Message) -> str:
    """The enhanced status code (`5.1.1`) of a recipient block, or "" when it has none that is valid."""
    tokens = _one_line(block["Status"]).split()
    return tokens[0] if tokens and STATUS.fullmatch(tokens[0]) else ""


def _date(value: object) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(_one_line(value))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _all(message: Message, names: tuple[str, ...]) -> Iterator[object]:
    for name in names:
        yield from message.get_all(name, [])


def _decoded(part: Message) -> str:
    """The text of a leaf part, its transfer encoding undone (UTF-8 unless it says otherwise)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _text(value: object) -> str:
    """A header value as text: RFC 2047 words and raw UTF-8 decoded (the parser keeps raw bytes as such)."""
    if value is None:
        return ""
    pieces: list[str] = []
    for chunk, charset in decode_header(value if isinstance(value, Header) else str(value)):
        if isinstance(chunk, str):
            pieces.append(chunk)
            continue
        try:
            pieces.append(
                chunk.decode(charset if charset not in (None, "unknown-8bit") else "utf-8", "replace")
            )
        except LookupError:
            pieces.append(chunk.decode("utf-8", "replace"))
    return "".join(pieces)


def _one_line(value: object) -> str:
    """A header value on one printable line (folds and control characters gone), at most MAX_TEXT long."""
    text = " ".join(_text(value).split())
    return "".join(char for char in text if char.isprintable())[:MAX_TEXT]
