"""`SendGate`: what a dispatcher asks before it sends and tells after a refusal (one gate per dispatcher).

1. Before claiming: `allowance()` says how many messages (and recipients) may go now, for the
   shared limits and this process's pace; when none may, `retry_at` says when one may.
2. After claiming: `admit(recipients of each claimed message)` reserves the first `admitted` in
   the shared limits *before* they are sent, so that no process can overtake a limit while it
   sends; the others are held until `retry_at` (back to `queued`, the claim not counted as an attempt).
   A message admitted counts even if its send then fails, as it counts at the provider.
3. After a failed send: `throttled(error)` returns a `Hold` when the server throttled (the pace
   drops) or said the sender's quota is spent (sending pauses for the quota's window): hold the
   notification until `until` instead of spending an attempt, even for a 5xx quota reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from limits.aio.storage import Storage

from ..mail.core.throttling import Throttle, throttle_of_error
from .pacing import Pacer
from .sending import Limit, SendLimiter, Window
from .settings import LimitsInForce

__all__ = ["Admission", "Allowance", "Hold", "LimitEvents", "SendGate", "create_gate"]

DEFAULT_QUOTA_HOLD = 3600
"""Seconds sending pauses after a quota reply when no sending limit says how long the quota's window is."""
ADMIT_TRIES = 3
"""Takes before `admit` gives up for now (other processes took the room each time)."""
FRESH = 1.0
"""Seconds a read of the windows stands for the next ones (less what this gate took meanwhile): an admission
right after `allowance()` only writes. Were another process quicker, the take fails and the windows are read."""
RACE_RETRY = 1.0
"""Seconds before messages held because other processes were quicker are tried again."""


@dataclass(frozen=True)
class Allowance:
    """What may go now: None for no limit; `retry_at` when nothing may (messages or recipients at 0)."""

    messages: int | None
    recipients: int | None
    retry_at: datetime | None


@dataclass(frozen=True)
class Admission:
    """The first `admitted` messages offered may be sent now (they are counted); the others wait until `retry_at`."""

    admitted: int
    retry_at: datetime | None


@dataclass(frozen=True)
class Hold:
    """A throttling reply: hold the notification until `until`; it was not an attempt."""

    throttle: Throttle
    until: datetime


class LimitEvents:
    """What a `SendGate` reports (for metrics); the methods do nothing unless overridden."""

    def held(self, reason: str, count: int) -> None:
        """`count` messages were held back, because of `reason`: message_rate (MAIL_RATE_LIMIT), recipient_rate
        (MAIL_RECIPIENT_RATE_LIMIT), pace (this process's), throttle (a throttling reply), quota (a quota reply,
        or the pause after one)."""

    def paced(self, server: str, rate: float | None) -> None:
        """This process now allows itself `rate` messages per second to `server` (None: not slowed down)."""

    def throttled(self, server: str, throttle: Throttle) -> None:
        """`server` answered a throttling reply."""


class SendGate:
    """The shared limits (`limiter`, None when none is set) and this process's `pacer`, for one SMTP account."""

    def __init__(
        self,
        pacer: Pacer,
        limiter: SendLimiter | None = None,
        *,
        quota_hold: float = DEFAULT_QUOTA_HOLD,
        events: LimitEvents | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pacer = pacer
        self._limiter = limiter
        self._quota_hold = quota_hold
        self._events = events or LimitEvents()
        self._clock = clock
        self._seen: tuple[float, list[Window]] = (-FRESH, [])
        """When the windows were last read, and what they held then less what this gate took since."""

    async def allowance(self) -> Allowance:
        """How many messages and recipients may go now, and when more may if none can."""
        windows = await self._read()
        paced = self.pacer.available()
        counts = [window.remaining for window in windows if window.limit.counts == "messages"]
        messages = min([*counts, *([] if paced is None else [paced])], default=None)
        recipients = min(
            (window.remaining for window in windows if window.limit.counts == "recipients"), default=None
        )
        if messages != 0 and recipients != 0:
            return Allowance(messages, recipients, None)
        waits = [window.frees_at for window in windows if window.remaining == 0]
        if paced == 0:
            waits.append(self._clock() + self.pacer.delay())
        return Allowance(messages, recipients, self._at(max(waits)))

    async def admit(self, recipients: Sequence[int]) -> Admission:
        """Reserve sending for the first messages of those offered (`recipients`: each one's count), as many
        as the limits and the pace allow; the rest wait until `retry_at`."""
        seen_at, windows = self._seen
        if self._clock() - seen_at >= FRESH:
            windows = await self._read()
        count, reason, retry_at = 0, "pace", self._clock()
        for _ in range(ADMIT_TRIES):
            count, reason, retry_at = self._fit(recipients, windows)
            full = await self._take(count, recipients)
            if full is None:
                self.pacer.take(count)
                less = [
                    replace(window, remaining=window.remaining - _cost(window, recipients, count))
                    for window in windows
                ]
                self._seen = (self._seen[0], less)
                break
            windows = await self._read()
            count, reason, retry_at = 0, _reason(full.counts), self._clock() + RACE_RETRY
        held = len(recipients) - count
        if held:
            self._events.held(reason, held)
        return Admission(count, self._at(retry_at) if held else None)

    @property
    def shortest_window(self) -> int | None:
        """Seconds of the shortest shared window (None: no shared limit)."""
        if self._limiter is None:
            return None
        return min((limit.item.get_expiry() for limit in self._limiter.limits), default=None)

    def throttled(self, error: BaseException) -> Hold | None:
        """A `Hold` when `error` carries a throttling or quota reply (and the pace drops or sending pauses),
        else None: an ordinary failure, an attempt like any other."""
        throttle = throttle_of_error(error)
        if throttle is None:
            return None
        server = self.pacer.server
        self._events.throttled(server, throttle)
        if throttle is Throttle.QUOTA:
            self.pacer.pause(self._quota_hold)
            self._events.held("quota", 1)
            return Hold(throttle, self._at(self._clock() + self._quota_hold))
        self.pacer.throttled()
        self._events.paced(server, self.pacer.rate)
        self._events.held("throttle", 1)
        return Hold(throttle, self._at(self._clock() + self.pacer.delay()))

    async def _take(self, count: int, recipients: Sequence[int]) -> Limit | None:
        """Take the first `count` messages from the shared limits; None when they had room, else the full one."""
        if not count or self._limiter is None:
            return None
        return await self._limiter.take(count, sum(recipients[:count]))

    async def _read(self) -> list[Window]:
        """The windows as they are now (remembered for FRESH seconds)."""
        windows = [] if self._limiter is None else await self._limiter.windows()
        self._seen = (self._clock(), windows)
        return windows

    def _fit(self, recipients: Sequence[int], windows: list[Window]) -> tuple[int, str, float]:
        """(how many of the messages offered fit now, why the next one does not, when it may)."""
        paced = self.pacer.available()
        count = len(recipients) if paced is None else min(len(recipients), paced)
        for window in windows:
            while count and window.remaining < _cost(window, recipients, count):
                count -= 1
        if count == len(recipients):
            return count, "pace", self._clock()
        blocked = [
            (window.frees_at, _reason(window.limit.counts))
            for window in windows
            if window.remaining < _cost(window, recipients, count + 1)
        ]
        if paced is not None and paced <= count:
            blocked.append(
                (self._clock() + self.pacer.delay(after=count), "quota" if self.pacer.paused else "pace")
            )
        retry_at, reason = max(blocked)
        return count, reason, max(retry_at, self._clock())

    def _at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)


def _cost(window: Window, recipients: Sequence[int], count: int) -> int:
    """What the first `count` messages take from `window`."""
    return count if window.limit.counts == "messages" else sum(recipients[:count])


def _reason(counts: str) -> str:
    return "message_rate" if counts == "messages" else "recipient_rate"


def create_gate(
    storage: Storage, limits: LimitsInForce, server: str, account: str, events: LimitEvents | None = None
) -> SendGate:
    """The gate of a dispatcher sending as `account` (MAIL_USERNAME) to MAIL_SERVER `server` under `limits`."""
    messages, recipients = limits.messages.items, limits.recipients.items
    limiter = (
        SendLimiter(storage, messages, recipients, f"{server}:{account}") if messages or recipients else None
    )
    return SendGate(
        Pacer(server), limiter, quota_hold=limits.longest_period or DEFAULT_QUOTA_HOLD, events=events
    )
