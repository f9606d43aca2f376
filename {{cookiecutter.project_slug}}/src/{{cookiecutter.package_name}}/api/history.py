"""Each recipient of a notification, its state and its events in time order (part of GET /notifications/{id})."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..store import NotificationRecord, RecipientEventRecord, Status, normalize

__all__ = ["RecipientEvent", "RecipientHistory", "histories"]

RANK = {
    "complained": 7,
    "bounced": 6,
    "suppressed": 6,
    "refused": 5,
    "delivered": 4,
    "deferred": 2,
    "sent": 1,
}
"""A recipient's state is its weightiest event: a complaint outweighs the delivery before it."""
SOFT_RANK = 3
SEND_SOURCES = ("smtp", "suppression_list")


class RecipientEvent(BaseModel):
    """One thing that happened to a recipient: the SMTP server's answer, or a later report."""

    type: str = Field(
        description="sent (the server took it), refused, suppressed (not sent), delivered, bounced, complained, deferred."
    )
    at: datetime
    source: str = Field(
        description="smtp, suppression_list, ses, sendgrid, mailgun, postmark or bounce_mailbox."
    )
    bounce: str | None = Field(default=None, description="hard or soft, for a bounce.")
    status: str = Field(default="", description='The enhanced status code ("5.1.1"), if any.')
    diagnostic: str = Field(default="", description="The server's reply or the report's diagnostic.")


class RecipientHistory(BaseModel):
    """A recipient, where it stands, and its events oldest first."""

    address: str
    state: str = Field(
        description="queued, sending, retrying, failed, sent, refused, suppressed, delivered, deferred, bounced, complained."
    )
    events: list[RecipientEvent]


def histories(record: NotificationRecord, stored: list[RecipientEventRecord]) -> list[RecipientHistory]:
    """The recipients of `record` (as the caller gave them) with their events."""
    content = record.content or {}
    given = [*content.get("to", []), *content.get("cc", [])] or [
        *record.accepted,
        *record.refused,
        *record.pending,
    ]
    by_address: dict[str, list[RecipientEvent]] = {normalize(address): [] for address in given}
    accepted = {normalize(address) for address in record.accepted}
    sent_at, sent_reply = last_acceptance(record)
    for address in accepted & by_address.keys():
        by_address[address].append(
            RecipientEvent(type="sent", at=sent_at, source="smtp", diagnostic=sent_reply)
        )
    for event in stored:
        by_address.setdefault(event.recipient, []).append(
            RecipientEvent(
                type=event.type,
                at=event.occurred_at,
                source=event.source,
                bounce=event.bounce,
                status=event.status,
                diagnostic=event.diagnostic,
            )
        )
    names = {normalize(address): address for address in given}
    return [
        RecipientHistory(
            address=names.get(address, address),
            state=state(record, events),
            events=sorted(events, key=order),
        )
        for address, events in by_address.items()
    ]


def order(event: RecipientEvent) -> tuple[bool, datetime]:
    """The send's own events first, then the reports about it, each in time order (a report's time may be
    rounded down to its second, before the server's reply was recorded)."""
    return event.source not in SEND_SOURCES, event.at


def state(record: NotificationRecord, events: list[RecipientEvent]) -> str:
    """The weightiest event's type, or the notification's status while nothing happened to the recipient."""
    if not events:
        return str(record.status) if record.status != Status.SENT else "sent"
    return max(events, key=lambda e: SOFT_RANK if e.bounce == "soft" else RANK.get(e.type, 0)).type


def last_acceptance(record: NotificationRecord) -> tuple[datetime, str]:
    """When the server last took the message, and its reply (the part before any deferral)."""
    for attempt in reversed(record.attempts):
        if attempt.get("outcome") in (Status.SENT, Status.RETRYING):
            return datetime.fromisoformat(attempt["at"]), str(attempt["reply"]).split(";")[0]
    return record.finished_at or record.created_at, ""
