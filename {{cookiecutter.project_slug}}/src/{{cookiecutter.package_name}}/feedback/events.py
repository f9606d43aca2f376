"""One event type for everything that happens after the server's `250`, whichever source reported it.

Each source (a provider's webhook, the bounce mailbox, the SMTP server's own refusal) normalizes
what it reports to `DeliveryEvent`s; matching an event to its notification and acting on it
(suppression, history, outgoing events) never needs to know the source's format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["BounceKind", "DeliveryEvent", "EventType"]


class EventType(StrEnum):
    """What happened to a message for one recipient."""

    DELIVERED = "delivered"  # the receiving server accepted it
    BOUNCED = "bounced"  # it was refused or returned (`BounceKind` says whether for good)
    COMPLAINED = "complained"  # the recipient marked it as spam (a feedback loop report)
    DEFERRED = "deferred"  # delivery was delayed; the sender keeps trying


class BounceKind(StrEnum):
    """A hard bounce will repeat (unknown mailbox, domain gone); a soft one may pass (mailbox full)."""

    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class DeliveryEvent:
    """One thing that happened to one recipient of one message, as a source reported it.

    `notification_id` is what the source echoed back of the id the service put in the message
    (provider metadata, a VERP address); `message_id` the original Message-ID, for matching when
    there is no id. `status` is the enhanced status code ("5.1.1") and `diagnostic` the receiving
    server's text, one line each. `event_id` identifies the report at its source (duplicates).
    """

    type: EventType
    recipient: str
    source: str
    occurred_at: datetime
    notification_id: str | None = None
    message_id: str | None = None
    bounce: BounceKind | None = None
    status: str = ""
    diagnostic: str = ""
    event_id: str = ""
