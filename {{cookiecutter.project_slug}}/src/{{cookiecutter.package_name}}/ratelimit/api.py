"""API_RATE_LIMIT: requests per period for each API key, counted for every API process together.

A key is known by its fingerprint (the start of its SHA-256), never by itself: the fingerprint names
its windows in the storage and labels its refusals in the metrics. Each window is a moving window,
so no stretch of its length holds more than its amount.
"""

from __future__ import annotations

import hashlib
import math
import time

from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from .settings import parse_limits

__all__ = ["ApiLimiter", "key_fingerprint"]

FINGERPRINT_LENGTH = 16
"""Hex digits of a key's SHA-256 that name it: enough to tell keys apart, nothing to recover one from."""


def key_fingerprint(key: str) -> str:
    """The fingerprint of API key `key`."""
    return hashlib.sha256(key.encode()).hexdigest()[:FINGERPRINT_LENGTH]


class ApiLimiter:
    """The limits `text` (API_RATE_LIMIT) per key, counted in a storage given by `bind` (opened as the service
    starts)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.items = tuple(sorted(parse_limits(text), key=lambda item: item.get_expiry()))
        self._strategy: MovingWindowRateLimiter | None = None

    def bind(self, storage: Storage) -> None:
        """Count in `storage` from now on; until then, `hit` lets every request through."""
        self._strategy = MovingWindowRateLimiter(storage)

    async def hit(self, fingerprint: str) -> int | None:
        """Count one request of the key `fingerprint`: None when it may go, else whole seconds until it may.

        A request refused by a longer window still counts in the shorter ones before it.
        """
        if self._strategy is None:
            return None
        for item in self.items:
            if not await self._strategy.hit(item, "api", fingerprint):
                stats = await self._strategy.get_window_stats(item, "api", fingerprint)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None
