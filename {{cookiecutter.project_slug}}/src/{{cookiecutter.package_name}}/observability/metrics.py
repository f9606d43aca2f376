"""Prometheus metrics: the instruments (what the API accepted, what delivery did, the SMTP pool) and the scrape.

Counters and histograms live in prometheus-client's default registry, or, when the environment
sets PROMETHEUS_MULTIPROC_DIR, in its multiprocess files there, so that one scrape of any API
process sums every process sharing the folder (uvicorn workers, delivery workers). Gauges read at
scrape time (the store's backlog) are collectors the scraping route passes to `exposition`.
No label carries a recipient, an id or any other unbounded value. This module imports nothing of
the service's features: they count on its `instruments()`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..mail.core.loading import EnvSettings

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
"""The folder shared by every process of the service, or None: this process's own registry."""

HOST = socket.gethostname().replace("_", "-")


def process_id() -> str:
    """Names this process's files in MULTIPROCESS_DIR: the pid alone repeats across containers (each has a pid 1)."""
    return f"{HOST}-{os.getpid()}"


if MULTIPROCESS_DIR is not None:  # before any metric is made
    values.ValueClass = values.MultiProcessValue(process_id)  # type: ignore[no-untyped-call]  # untyped in prometheus-client


class MetricsSettings(EnvSettings):
    """Whether the service counts and serves metrics, from METRICS_* variables (and `.env`)."""

    model_config = SettingsConfigDict(env_prefix="METRICS_")

    enabled: bool = Field(
        default=True,
        description="Count what the service does and serve it at GET /metrics (with an API key); false: neither.",
    )


LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as themselves; any other token a server accepts is labelled `other`."""
RECEIVED_OUTCOMES = (
    "queued",
    "idempotent_repeat",
    "invalid",
    "over_limit",
    "unauthorized",
    "rate_limited",
    "error",
)
RATE_LIMITED = "rate_limited"
"""The key of the request's state that says API_RATE_LIMIT refused it (a 429 otherwise means failed logins)."""
DELIVERY_OUTCOMES = ("sent", "retried", "failed")
HOLD_REASONS = ("message_rate", "recipient_rate", "pace", "throttle", "quota")


class Instruments:
    """This process's metrics; `instruments()` makes them once, on first use (METRICS_ENABLED)."""

    def __init__(self) -> None:
        self.received = Counter(
            "notifications_received",
            "POST /notifications by outcome: queued, idempotent_repeat, or rejected as invalid (422), "
            "over_limit (413, 408, 503), unauthorized (401, 429 after failed logins), rate_limited (429 over "
            "API_RATE_LIMIT), error (other 5xx).",
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
        self.held = Counter(
            "notifications_held",
            "Messages held back instead of sent, by reason: message_rate (MAIL_RATE_LIMIT), recipient_rate "
            "(MAIL_RECIPIENT_RATE_LIMIT), pace (slowed down after throttling), throttle (a throttling reply), "
            "quota (a spent quota).",
            ["reason"],
        )
        self.pace = Gauge(
            "smtp_pace_messages_per_second",
            "Messages per second the processes allow themselves to the server after throttling replies "
            "(summed over processes; 0: not slowed down).",
            ["server"],
            multiprocess_mode="livesum",
        )
        self.throttle_replies = Counter(
            "smtp_throttle_replies",
            "Throttling replies from the server, by what they ask: rate, connections, quota.",
            ["server", "kind"],
        )
        self.api_rate_limited = Counter(
            "api_rate_limited",
            "Requests refused with 429 over API_RATE_LIMIT, by the key's fingerprint (never the key).",
            ["key"],
        )
        for outcome in RECEIVED_OUTCOMES:  # present from the start, so rate() sees the first one
            self.received.labels(outcome)
        for outcome in DELIVERY_OUTCOMES:
            self.outcomes.labels(outcome)
        for reason in HOLD_REASONS:
            self.held.labels(reason)


_instruments: list[Instruments] = []
_instruments_lock = threading.Lock()


def instruments() -> Instruments:
    """This process's metrics, made on the first call (after `multiprocess_dir_problem` found none)."""
    with _instruments_lock:
        if not _instruments:
            _instruments.append(Instruments())
        return _instruments[0]


def multiprocess_dir_problem() -> str | None:
    """Why PROMETHEUS_MULTIPROC_DIR, when set, cannot be used: not a folder this process can write."""
    folder = MULTIPROCESS_DIR
    if folder is not None and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        return (
            f"PROMETHEUS_MULTIPROC_DIR ({folder}) is not a writable folder: create it, empty "
            "and shared by every process of the service, or unset it for one process"
        )
    return None


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
            method, route = method_label(scope["method"]), route_template(scope)
            self._m.http_requests.labels(method, route, str(status)).inc()
            self._m.http_duration.labels(method, route).observe(time.perf_counter() - started)
            if route == "/notifications" and method == "POST":
                self._m.received.labels(received_outcome(status, scope)).inc()


def method_label(method: str) -> str:
    """`method` if it is one of HTTP_METHODS, else "other" (a label value must come from a fixed set)."""
    return method if method in HTTP_METHODS else "other"


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
    if status == 429 and scope.get("state", {}).get(RATE_LIMITED):
        return "rate_limited"
    if status in (401, 403, 429):  # 429: the address failed to authenticate too often
        return "unauthorized"
    if status in (408, 413, 503):  # 503: the bodies in flight are capped
        return "over_limit"
    return "error" if status >= 500 else "invalid"


def exposition(collectors: Iterable[Collector] = ()) -> bytes:
    """Every metric in the Prometheus text format: this process's (or, in multiprocess mode, every
    process's) plus `collectors`, read now (gauges such as the store's backlog)."""
    registry = CollectorRegistry()
    if MULTIPROCESS_DIR is not None:
        MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    for collector in collectors:
        registry.register(collector)
    sources = [registry] if MULTIPROCESS_DIR is not None else [REGISTRY, registry]
    return b"".join(generate_latest(source) for source in sources)


def process_exiting() -> None:
    """Drop this process's live gauges (open sessions) from MULTIPROCESS_DIR; call it as the process ends."""
    if MULTIPROCESS_DIR is not None:
        mark_process_dead(process_id(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
