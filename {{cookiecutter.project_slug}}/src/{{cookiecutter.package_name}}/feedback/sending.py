"""At send time: skip suppressed recipients, make the reports name the notification, learn from refusals.

`SendFeedback` is what the dispatcher asks: which recipients are suppressed, which headers make the
provider echo the notification id (SendGrid `X-SMTPAPI`, Mailgun `X-Mailgun-Variables`, Postmark
`X-PM-Metadata-*`, SES `X-SES-MESSAGE-TAGS`), the VERP envelope sender, and (`complete`) the rows an
attempt's outcome adds in its own transaction: each recipient's events, the suppression of an address
the server refused as unknown (RFC 3463 X.1.x), the outgoing events for EVENTS_WEBHOOK_URL.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiosmtplib

from ..mail.core.errors import causes_of
from ..mail.core.loading import load_settings
from ..mail.providers import provider_of
from ..store import NotificationRecord, NotificationStore, Outcome, Reason, Status, Suppression, normalize
from ..store.events import EVENTS, OUTBOX, SUPPRESSIONS, event_row
from ..store.outbox import outbox_row
from .bounces import BounceSettings, verp_address
from .metrics import feedback_metrics
from .settings import FeedbackSettings
from .webhooks import WebhookSettings, tracking_headers

__all__ = ["FeedbackContext", "SendFeedback", "enhanced_status", "is_address_refusal", "rcpt_refusals"]

SOURCE = "smtp"
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
ADDRESS_SUBJECTS = {"0", "1", "2", "3", "4", "6", "10"}
"""RFC 3463 X.1.y about the recipient's address: other, bad mailbox, bad system, bad syntax, ambiguous, moved,
null MX (X.1.7 and X.1.8 are about the sender's, X.1.5 and X.1.9 are not failures)."""
FINAL = {
    Status.SENT: "notification.sent",
    Status.FAILED: "notification.failed",
    Status.SUPPRESSED: "notification.suppressed",
}


def enhanced_status(reply: str) -> str:
    """The RFC 3463 enhanced status code in an SMTP reply ("5.1.1"), or ""."""
    found = ENHANCED_STATUS.search(reply)
    return ".".join(found.groups()) if found else ""


def is_address_refusal(reply: str) -> bool:
    """Whether `reply` refuses the recipient's address for good: a 5xx reply with a 5.1.x address status."""
    status = enhanced_status(reply)
    return reply.startswith("5") and status.startswith("5.1.") and status.split(".")[2] in ADDRESS_SUBJECTS


def rcpt_refusals(error: BaseException) -> dict[str, str]:
    """The recipients a failed send had refused at RCPT, each with the server's reply (every one, when the
    server refused them all)."""
    for cause in causes_of(error):
        if isinstance(cause, aiosmtplib.SMTPRecipientsRefused):
            return {
                each.recipient: " ".join(f"{each.code} {each.message}".split()) for each in cause.recipients
            }
    return {}


class FeedbackContext(Protocol):
    """The settings `SendFeedback.of` reads (the service's `Settings` has them)."""

    @property
    def webhooks(self) -> WebhookSettings: ...

    @property
    def bounces(self) -> BounceSettings: ...

    @property
    def feedback(self) -> FeedbackSettings: ...


@dataclass(frozen=True)
class FeedbackConfig:
    """The three groups of settings of the feedback loop, loaded on their own (a worker process)."""

    webhooks: WebhookSettings
    bounces: BounceSettings
    feedback: FeedbackSettings


@dataclass(frozen=True)
class SendFeedback:
    """The send-time side of the feedback loop; the default does nothing but skip suppressed recipients."""

    provider: str | None = None
    webhooks: WebhookSettings | None = None
    bounce_domain: str | None = None
    events: bool = False
    """Whether outgoing events are written (EVENTS_WEBHOOK_URL is set)."""
    counted: bool = False
    """Whether skipped recipients are counted (METRICS_ENABLED)."""

    @classmethod
    def of(cls, mail_server: str, settings: FeedbackContext, *, metrics: bool = False) -> SendFeedback:
        """The feedback for mail sent through `mail_server` (its provider's tracking headers) with `settings`."""
        provider = provider_of(mail_server)
        return cls(
            provider=provider.name if provider else None,
            webhooks=settings.webhooks,
            bounce_domain=settings.bounces.domain,
            events=settings.feedback.events_enabled,
            counted=metrics,
        )

    @classmethod
    def from_env(cls, mail_server: str, *, metrics: bool = False) -> SendFeedback:
        """`of` with the WEBHOOK_*, BOUNCE_* and SUPPRESSION_/EVENTS_* variables (a worker process's)."""
        loaded = FeedbackConfig(
            load_settings(WebhookSettings), load_settings(BounceSettings), load_settings(FeedbackSettings)
        )
        return cls.of(mail_server, loaded, metrics=metrics)

    def headers(self, notification_id: str) -> dict[str, str]:
        """The headers that make the provider (if MAIL_SERVER is one of the presets') echo `notification_id`."""
        if self.webhooks is None:
            return {}
        return tracking_headers(self.provider, notification_id, self.webhooks)

    def envelope_sender(self, notification_id: str) -> str | None:
        """`bounces+<id>@BOUNCE_DOMAIN` when BOUNCE_DOMAIN is set, else None (MAIL_FROM)."""
        return verp_address(notification_id, self.bounce_domain) if self.bounce_domain else None

    async def suppressed(
        self, store: NotificationStore, record: NotificationRecord
    ) -> dict[str, Suppression]:
        """The suppressed ones of `record`'s pending recipients, by normalized address."""
        return await store.suppressions.suppressed_among(record.pending) if record.pending else {}

    def complete(
        self, record: NotificationRecord, outcome: Outcome, skipped: Mapping[str, Suppression]
    ) -> Outcome:
        """`outcome` with the rows its attempt adds: events of skipped and refused recipients, suppressions of
        unknown addresses, and the outgoing events of a final status and of each such bounce."""
        events: list[dict[str, Any]] = []
        suppress: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        skipped_here = [address for address in record.pending if normalize(address) in skipped]
        for address in skipped_here:
            entry = skipped[normalize(address)]
            why = f"on the suppression list since {entry.since.isoformat()} ({entry.reason})"
            events.append(event_row(record.id, address, "suppressed", "suppression_list", diagnostic=why))
        for address, reply in (outcome.refused or {}).items():
            if reply.startswith("4"):
                continue
            status = enhanced_status(reply)
            if not is_address_refusal(reply):
                events.append(
                    event_row(record.id, address, "refused", SOURCE, status=status, diagnostic=reply)
                )
                continue
            row = event_row(
                record.id, address, "bounced", SOURCE, bounce="hard", status=status, diagnostic=reply
            )
            events.append(row)
            described = {
                "source": SOURCE,
                "type": "bounced",
                "notification_id": record.id,
                "status": status,
                "diagnostic": row["diagnostic"],
            }
            suppress.append(
                {
                    "address": row["recipient"],
                    "reason": str(Reason.HARD_BOUNCE),
                    "event": described,
                    "created_at": row["occurred_at"],
                }
            )
            if self.events:
                outbox.append(
                    outbox_row(
                        "recipient.bounced",
                        {
                            **described,
                            "recipient": row["recipient"],
                            "bounce": "hard",
                            "client": record.client,
                        },
                    )
                )
        if self.events and outcome.status in FINAL:
            data = {
                "notification_id": record.id,
                "client": record.client,
                "status": str(outcome.status),
                "accepted": [*record.accepted, *outcome.accepted],
                "refused": {**record.refused, **(outcome.refused or {})},
                "suppressed": [normalize(address) for address in skipped_here],
                "reply": outcome.reply,
            }
            outbox.append(outbox_row(FINAL[outcome.status], data))
        if self.counted and skipped_here:
            feedback_metrics().suppressed_skipped.inc(len(skipped_here))
        rows = [(EVENTS, events), (SUPPRESSIONS, suppress), (OUTBOX, outbox)]
        return dataclasses.replace(
            outcome, rows=[*outcome.rows, *((table, group) for table, group in rows if group)]
        )
