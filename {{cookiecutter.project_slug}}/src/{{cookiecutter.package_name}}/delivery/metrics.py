"""Delivery's metrics: what the mailer and the dispatcher report, counted on the service's instruments."""

from __future__ import annotations

from ..mail import MailEvents
from ..observability.metrics import MetricsSettings, instruments
from ..store import NotificationRecord, Status, utcnow
from .dispatcher import DeliveryEvents

OUTCOME_LABELS = {Status.SENT: "sent", Status.RETRYING: "retried", Status.FAILED: "failed"}


class DeliveryMetrics(MailEvents, DeliveryEvents):
    """The mailer's and the dispatcher's events, counted."""

    def __init__(self) -> None:
        self._m = instruments()

    def session_opened(self) -> None:
        self._m.sessions_open.inc()

    def session_closed(self) -> None:
        self._m.sessions_open.dec()

    def session_taken(self) -> None:
        self._m.sessions_in_use.inc()

    def session_returned(self) -> None:
        self._m.sessions_in_use.dec()

    def transaction_finished(self, seconds: float, result: str) -> None:
        self._m.transactions.labels(result).observe(seconds)

    def token_refreshed(self, ok: bool) -> None:
        self._m.token_requests.labels("ok" if ok else "error").inc()

    def attempted(self, result: str) -> None:
        self._m.attempts.labels(result).inc()

    def recorded(self, record: NotificationRecord, status: Status) -> None:
        self._m.outcomes.labels(OUTCOME_LABELS.get(status, str(status))).inc()
        if status == Status.SENT:
            self._m.latency.observe(max((utcnow() - record.created_at).total_seconds(), 0.0))


def delivery_metrics(settings: MetricsSettings) -> DeliveryMetrics | None:
    """The events to give the mailer and the dispatcher: counted, or None when METRICS_ENABLED is false."""
    return DeliveryMetrics() if settings.enabled else None
