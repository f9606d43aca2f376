"""The feedback loop's metrics: provider events by type, refused signatures, unmatched events, skipped
suppressed recipients, outgoing event deliveries by outcome (only made when METRICS_ENABLED)."""

from __future__ import annotations

import threading

from prometheus_client import Counter

__all__ = ["FeedbackInstruments", "feedback_metrics"]

OUTGOING_OUTCOMES = ("delivered", "retried", "failed")


class FeedbackInstruments:
    """This process's feedback counters; `feedback_metrics()` makes them once."""

    def __init__(self) -> None:
        self.events_received = Counter(
            "feedback_events_received",
            "Delivery events received, by source (ses, sendgrid, mailgun, postmark, bounce_mailbox) and type "
            "(delivered, bounced, complained, deferred).",
            ["source", "type"],
        )
        self.signature_failures = Counter(
            "feedback_webhook_signature_failures",
            "Webhook requests refused with 401 (bad or missing signature or credentials, or a replay), by provider.",
            ["provider"],
        )
        self.unmatched = Counter(
            "feedback_events_unmatched",
            "Delivery events that matched no notification (answered 2xx, not stored), by source.",
            ["source"],
        )
        self.suppressed_skipped = Counter(
            "feedback_suppressed_recipients_skipped",
            "Recipients not sent to because they are on the suppression list.",
        )
        self.outgoing = Counter(
            "feedback_outgoing_event_deliveries",
            "Deliveries of outgoing events to EVENTS_WEBHOOK_URL, by outcome: delivered, retried, failed (given up).",
            ["outcome"],
        )
        for outcome in OUTGOING_OUTCOMES:
            self.outgoing.labels(outcome)


_instruments: list[FeedbackInstruments] = []
_lock = threading.Lock()


def feedback_metrics() -> FeedbackInstruments:
    """This process's feedback counters, made on the first call."""
    with _lock:
        if not _instruments:
            _instruments.append(FeedbackInstruments())
        return _instruments[0]
