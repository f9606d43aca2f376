"""The limits' metrics: what a `SendGate` reports, counted on the service's instruments."""

from __future__ import annotations

from ..mail.core.throttling import Throttle
from ..observability.metrics import MetricsSettings, instruments
from .gate import LimitEvents


class LimitMetrics(LimitEvents):
    """Held messages, the pace per server and throttling replies, counted."""

    def __init__(self) -> None:
        self._m = instruments()

    def held(self, reason: str, count: int) -> None:
        self._m.held.labels(reason).inc(count)

    def paced(self, server: str, rate: float | None) -> None:
        self._m.pace.labels(server).set(rate or 0.0)

    def throttled(self, server: str, throttle: Throttle) -> None:
        self._m.throttle_replies.labels(server, str(throttle)).inc()


def limit_metrics(settings: MetricsSettings) -> LimitMetrics | None:
    """The events to give a `SendGate`: counted, or None when METRICS_ENABLED is false."""
    return LimitMetrics() if settings.enabled else None
