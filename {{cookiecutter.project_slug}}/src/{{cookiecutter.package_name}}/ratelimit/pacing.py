"""A pacer per SMTP server: this process slows down when the server throttles it, then speeds up again.

The pace is this process's own, not shared: a throttling reply answers this process's sessions, and
every process that sends too fast hears its own; sharing the pace would cost a shared write per
send. What must hold for all processes together is the provider's limit, and the shared limits
(`SendLimiter`) enforce it on top of every pacer.

A rate or connections reply halves the pace (starting from the rate this process
was sending at; at most once per COOLDOWN, so that the replies of sends in flight count once); every
RECOVERY seconds without one it grows by half, and pacing stops once it is back at the rate it was
first throttled at. A quota reply pauses sending for the quota's window. Sends are spaced by a token
bucket holding at most one second's worth.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Pacer"]

DECREASE = 0.5
"""The pace is multiplied by this on a throttling reply."""
INCREASE = 1.5
"""... and by this after each RECOVERY seconds without one."""
RECOVERY = 30.0
COOLDOWN = 1.0
"""Seconds during which further throttling replies do not lower the pace again."""
OBSERVE = 10.0
"""Seconds of sends that tell the rate this process was sending at when first throttled."""
FLOOR = 1 / 60
"""The slowest pace, in messages per second."""


class Pacer:
    """The pace of sends to `server` from this process; `clock` gives monotonic seconds."""

    def __init__(self, server: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self._clock = clock
        self._rate: float | None = None
        self._ceiling = 0.0
        self._tokens = 0.0
        self._updated = clock()
        self._calm_since = 0.0
        self._last_decrease = -math.inf
        self._paused_until = -math.inf
        self._sent: deque[float] = deque()

    @property
    def rate(self) -> float | None:
        """Messages per second allowed now; None: not slowed down."""
        self._update()
        return self._rate

    @property
    def paused(self) -> bool:
        """Whether a quota reply paused sending (for the rest of its window)."""
        return self._update() < self._paused_until

    def available(self) -> int | None:
        """How many sends may start now; None: as many as wanted (not slowed down, not paused)."""
        now = self._update()
        if now < self._paused_until:
            return 0
        return None if self._rate is None else int(self._tokens)

    def delay(self, after: int = 0) -> float:
        """Seconds until one more send may start once `after` more have started (0: now)."""
        now = self._update()
        wait = max(self._paused_until - now, 0.0)
        if self._rate is not None:
            wait = max(wait, (after + 1 - self._tokens) / self._rate)
        return wait

    def take(self, count: int) -> None:
        """`count` sends start now."""
        now = self._update()
        self._sent.extend([now] * count)
        if self._rate is not None:
            self._tokens -= count

    def throttled(self) -> None:
        """The server asked to slow down: halve the pace, at most once per COOLDOWN."""
        now = self._update()
        if now - self._last_decrease < COOLDOWN:
            return
        self._last_decrease = now
        if self._rate is None:
            self._ceiling = max(len(self._sent) / OBSERVE, FLOOR)
            self._rate = self._ceiling
        self._rate = max(self._rate * DECREASE, FLOOR)
        self._tokens = min(self._tokens, 0.0)
        self._calm_since = now

    def pause(self, seconds: float) -> None:
        """The sender's quota is spent: start nothing for `seconds`."""
        now = self._update()
        self._paused_until = max(self._paused_until, now + seconds)

    def _update(self) -> float:
        """Forget old sends, recover the pace, refill the bucket; returns the time now."""
        now = self._clock()
        while self._sent and self._sent[0] < now - OBSERVE:
            self._sent.popleft()
        if self._rate is not None:
            self._tokens = min(self._tokens + (now - self._updated) * self._rate, max(self._rate, 1.0))
            while self._rate is not None and now - self._calm_since >= RECOVERY:
                self._calm_since += RECOVERY
                self._rate *= INCREASE
                if self._rate >= self._ceiling:
                    self._rate = None
        self._updated = now
        return now
