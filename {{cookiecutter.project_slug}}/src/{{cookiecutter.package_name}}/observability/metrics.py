"""Prometheus metrics: what the API accepted, what delivery did, the SMTP pool, and the store's backlog.

Counters and histograms live in prometheus-client's default registry, or, when the environment
sets PROMETHEUS_MULTIPROC_DIR, in its multiprocess files there, so that one scrape of any API
process sums every process sharing the folder (uvicorn workers, delivery workers). The backlog
gauges are read from the store at each scrape by the process answering it, never summed.
No label carries a recipient, an id or any other unbounded value.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..delivery.dispatcher import DeliveryEvents
from ..mail import MailEvents, SettingsError
from ..store import Backlog, NotificationRecord, NotificationStore, Status, utcnow

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
"""The folder shared by every process of the service, or None: this process's own registry."""

HOST = socket.gethostname().replace("_", "-")


def process_id() -> str:
    """Names this process's files in MULTIPROCESS_DIR: the pid alone repeats across containers (each has a pid 1)."""
    return f"{HOST}-{os.getpid()}"


if MULTIPROCESS_DIR is not None:  # before any metric is made
    values.ValueClass = values.MultiProcessValue(process_id)  # type: ignore[no-untyped-call]  # untyped in prometheus-client


class MetricsSettings(BaseSettings):
    """Whether the service counts and serves metrics, from METRICS_* variables (and `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="METRICS_", env_file=".env", env_ignore_empty=True, extra="ignore", frozen=True
    )

    enabled: bool = Field(
        default=True,
        description="Count what the service does and serve it at GET /metrics (with an API key); false: neither.",
    )


LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
RECEIVED_OUTCOMES = ("queued", "idempotent_repeat", "invalid", "over_limit", "unauthorized", "error")
DELIVERY_OUTCOMES = {Status.SENT: "sent", Status.RETRYING: "retried", Status.FAILED: "failed"}


class Instruments:
    """This process's metrics; `instruments()` makes them once, on first use (METRICS_ENABLED)."""

    def __init__(self) -> None:
        self.received = Counter(
            "notifications_received",
            "POST /notifications by outcome: queued, idempotent_repeat, or rejected as invalid (422), "
            "over_limit (413, 408), unauthorized (401), error (5xx).",
            ["outcome"],
        )
        self.attempts = Counter(
            "notifications_delivery_attempts",
            "Delivery attempts by result: 2xx, or what failed (4xx, 5xx, auth, tls, timeout, connect, no_reply, other).",
            ["result"],
        )
        self.outcomes = Counter(
            "notifications_delivery_outcomes",
            "Recorded outcomes of delivery attempts: sent, retried (rescheduled), failed.",
            ["outcome"],
        )
        self.latency = Histogram(
            "notifications_delivery_latency_seconds",
            "Seconds from a notification's acceptance (202) to its sending.",
            buckets=LATENCY_BUCKETS,
        )
        self.transactions = Histogram(
            "smtp_transaction_duration_seconds",
            "Seconds of each SMTP transaction (MAIL, RCPT, DATA), by result (2xx or what failed).",
            ["result"],
            buckets=TRANSACTION_BUCKETS,
        )
        self.sessions_open = Gauge(
            "smtp_sessions_open", "Pooled SMTP sessions open.", multiprocess_mode="livesum"
        )
        self.sessions_in_use = Gauge(
            "smtp_sessions_in_use", "Pooled SMTP sessions in a transaction.", multiprocess_mode="livesum"
        )
        self.token_requests = Counter(
            "smtp_oauth_token_requests",
            "OAuth2 token requests (MAIL_AUTH=xoauth2) by result: ok, error.",
            ["result"],
        )
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Seconds to answer HTTP requests, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
        )
        for outcome in RECEIVED_OUTCOMES:  # present from the start, so rate() sees the first one
            self.received.labels(outcome)
        for outcome in DELIVERY_OUTCOMES.values():
            self.outcomes.labels(outcome)


_instruments: list[Instruments] = []
_instruments_lock = threading.Lock()


def instruments() -> Instruments:
    """This process's metrics, made on the first call (see `check_multiprocess_dir`)."""
    with _instruments_lock:
        if not _instruments:
            check_multiprocess_dir()
            _instruments.append(Instruments())
        return _instruments[0]


def check_multiprocess_dir() -> None:
    """Raise `SettingsError` unless PROMETHEUS_MULTIPROC_DIR, when set, is a folder this process can write."""
    folder = MULTIPROCESS_DIR
    if folder is not None and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        raise SettingsError(
            f"invalid settings: PROMETHEUS_MULTIPROC_DIR ({folder}) is not a writable folder: create it, empty "
            "and shared by every process of the service, or unset it for one process"
        )


class ServiceMetrics(MailEvents, DeliveryEvents):
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
        self._m.outcomes.labels(DELIVERY_OUTCOMES.get(status, str(status))).inc()
        if status == Status.SENT:
            self._m.latency.observe(max((utcnow() - record.created_at).total_seconds(), 0.0))


def service_metrics(settings: MetricsSettings) -> ServiceMetrics | None:
    """The events to give the mailer and the dispatcher: counted, or None when METRICS_ENABLED is false."""
    return ServiceMetrics() if settings.enabled else None


class HttpMetrics:
    """ASGI middleware: counts requests by route template (never the raw path) and status, and times them;
    for POST /notifications, counts the outcome (`notifications_received_total`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._m = instruments()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method, route = scope["method"], route_template(scope)
            self._m.http_requests.labels(method, route, str(status)).inc()
            self._m.http_duration.labels(method, route).observe(time.perf_counter() - started)
            if route == "/notifications" and method == "POST":
                self._m.received.labels(received_outcome(status, scope)).inc()


def route_template(scope: Scope) -> str:
    """The path template of the route that answered ("/notifications/{notification_id}"), or "unmatched"."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Answered before routing (401, 413 or 408 from RequestLimits): a path without parameters names its route.
    app = scope.get("app")
    if app is not None and scope["path"] in app.openapi()["paths"]:
        return str(scope["path"])
    return "unmatched"


def received_outcome(status: int, scope: Scope) -> str:
    """One of RECEIVED_OUTCOMES for a POST /notifications answered with `status`."""
    if status < 300:
        outcome = scope.get("state", {}).get("notification_outcome")
        return outcome if outcome in RECEIVED_OUTCOMES else "queued"
    if status in (401, 403):
        return "unauthorized"
    if status in (408, 413):
        return "over_limit"
    return "error" if status >= 500 else "invalid"


class BacklogCollector:
    """The store's backlog, as read for one scrape."""

    def __init__(self, backlog: Backlog) -> None:
        self._backlog = backlog

    def collect(self) -> Iterable[Metric]:
        counts = GaugeMetricFamily(
            "notifications_backlog",
            "Notifications not finished, by status (from the store).",
            labels=["status"],
        )
        for status, count in self._backlog.counts.items():
            counts.add_metric([str(status)], count)
        oldest = self._backlog.oldest_due
        age = 0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0.0)
        yield counts
        yield GaugeMetricFamily(
            "notifications_oldest_due_age_seconds",
            "Seconds the oldest due notification (queued or retrying) has waited; 0 when none.",
            value=age,
        )


async def exposition(store: NotificationStore) -> bytes:
    """Every metric in the Prometheus text format: this process's (or, in multiprocess mode, every
    process's) plus the backlog read from `store` now."""
    registry = CollectorRegistry()
    if MULTIPROCESS_DIR is not None:
        MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    try:
        registry.register(BacklogCollector(await store.backlog()))
    except Exception:  # the store is away: serve the rest; the backlog series go missing (alert on absent())
        logger.warning("metrics: could not read the backlog from the store", exc_info=True)
    sources = [registry] if MULTIPROCESS_DIR is not None else [REGISTRY, registry]
    return b"".join(generate_latest(source) for source in sources)


def process_exiting() -> None:
    """Drop this process's live gauges (open sessions) from MULTIPROCESS_DIR; call it as the process ends."""
    if MULTIPROCESS_DIR is not None:
        mark_process_dead(process_id(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
