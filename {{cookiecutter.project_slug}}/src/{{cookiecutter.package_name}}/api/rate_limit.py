"""API_RATE_LIMIT per API key: 429 with Retry-After over it, before the body is read.

Only requests that carry a client's key are counted, each under the key's fingerprint (never the key;
two keys of one client, during a rotation, are counted apart); requests without one are left to
authentication (RequestLimits: 401, or 429 after too many failures). /health, /health/... and /metrics are never
limited, so probes and scrapes keep working for a key over its limit. Should the storage fail, the
request goes through (a warning is logged): the API stays up when Redis or the database hiccups.
"""

from __future__ import annotations

import logging

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..observability.metrics import RATE_LIMITED, Instruments
from ..ratelimit.api import ApiLimiter, key_fingerprint
from .auth import Authenticator

logger = logging.getLogger(__name__)

UNLIMITED_PATHS = ("/health", "/metrics")
"""Paths never limited, with what is under them."""


class ApiRateLimits:
    """ASGI middleware: counts each request with a key `authenticator` knows in `limiter`; 429 over it
    (`instruments` count them)."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        limiter: ApiLimiter,
        instruments: Instruments | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter
        self.instruments = instruments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_unlimited(scope["path"]):
            await self.app(scope, receive, send)
            return
        scheme, key = get_authorization_scheme_param(Headers(scope=scope).get("authorization"))
        if scheme.lower() != "bearer" or not key or self.authenticator.client_of(key) is None:
            await self.app(scope, receive, send)
            return
        fingerprint = key_fingerprint(key)
        try:
            retry_after = await self.limiter.hit(fingerprint)
        except Exception:
            logger.warning("API_RATE_LIMIT could not be counted; request let through", exc_info=True)
            retry_after = None
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[RATE_LIMITED] = True  # for notifications_received_total
        if self.instruments is not None:
            self.instruments.api_rate_limited.labels(fingerprint).inc()
        detail = (
            f"too many requests for this API key (API_RATE_LIMIT {self.limiter.text}); "
            f"retry after {retry_after} s"
        )
        response = JSONResponse(
            {"detail": detail}, status_code=429, headers={"Retry-After": str(retry_after)}
        )
        await response(scope, receive, send)


def is_unlimited(path: str) -> bool:
    """Whether `path` is one of UNLIMITED_PATHS or under one."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in UNLIMITED_PATHS)
