"""The sending limits as a dispatcher applies them: what may be claimed, what may go, what is held back.

A notification held back (a shared limit is reached, this process's pace is slowed, or the server
answered a throttling or quota reply) goes back to the store until the limit lets it go: it stays
queued with that time as its `next_attempt_at`, and the claim does not count as an attempt. One held
for longer than DELIVERY_MAX_HOLD since its last attempt fails, saying so, rather than wait forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from limits.aio.storage import Storage

from ..mail import MailSettings
from ..observability.metrics import MetricsSettings
from ..ratelimit.gate import SendGate, create_gate
from ..ratelimit.metrics import limit_metrics
from ..ratelimit.settings import LimitsInForce
from ..store import NotificationRecord, NotificationStore, utcnow

logger = logging.getLogger(__name__)

STORAGE_RETRY = 5.0
"""Seconds sending waits when the limits' storage cannot be read (nothing is sent uncounted)."""
MOST_SPREAD = 60.0
"""Seconds over which notifications held back together come back at most (see `Holding._spread`)."""


def sending_gate(
    storage: Storage, mail: MailSettings, limits: LimitsInForce, metrics: MetricsSettings
) -> SendGate:
    """The gate of a dispatcher sending with `mail`'s account under `limits`, counted in `storage`."""
    account = mail.username or str(mail.from_address)
    return create_gate(storage, limits, mail.server, account, limit_metrics(metrics))


class Holding:
    """The `gate` of one dispatcher sending from `store` (None: no limits, nothing is held)."""

    def __init__(self, store: NotificationStore, gate: SendGate | None, max_hold: float) -> None:
        self.gate = gate
        self._store = store
        self._max_hold = max_hold
        self._clear = False
        """The last admission took every message offered: claim without asking first (one read fewer)."""

    async def claimable(self, free: int) -> tuple[int, float]:
        """How many of `free` slots may claim now, and, when none may, the seconds until one may.

        While the limits let everything through, the answer is `free` without asking them: `admit` counts
        what is claimed, and holds back what does not fit."""
        if self.gate is None or self._clear:
            return free, 0.0
        try:
            allowance = await self.gate.allowance()
        except Exception as error:
            logger.warning("sending limits: could not read them (%s); sending waits", type(error).__name__)
            return 0, STORAGE_RETRY
        if allowance.retry_at is not None:
            return 0, max((allowance.retry_at - utcnow()).total_seconds(), 0.0)
        return free if allowance.messages is None else min(free, allowance.messages), 0.0

    async def admit(self, claimed: Sequence[NotificationRecord]) -> list[NotificationRecord]:
        """Those of `claimed` that may be sent now (counted in the limits); the others are held back.

        One held back for too long is let through: its attempt fails it (see `overdue`)."""
        overdue = [record for record in claimed if self.overdue(record) is not None]
        offered = [record for record in claimed if self.overdue(record) is None]
        if self.gate is None or not offered:
            return [*overdue, *offered]
        try:
            admission = await self.gate.admit([len(record.pending) for record in offered])
        except Exception as error:
            logger.warning(
                "sending limits: could not count in them (%s); sending waits", type(error).__name__
            )
            self._clear = False
            until = utcnow() + timedelta(seconds=STORAGE_RETRY)
            why = "held back: the sending limits could not be read"
            await asyncio.gather(*(self.hold(record, until, why) for record in offered))
            return overdue
        admitted, held = offered[: admission.admitted], offered[admission.admitted :]
        self._clear = not held
        if held and admission.retry_at is not None:
            why = "held back by a sending limit (MAIL_RATE_LIMIT, MAIL_RECIPIENT_RATE_LIMIT) or the pace"
            await asyncio.gather(
                *(self.hold(record, self._spread(admission.retry_at), why) for record in held)
            )
        return [*overdue, *admitted]

    def _spread(self, retry_at: datetime) -> datetime:
        """A random time within the shortest window (MOST_SPREAD at most) after `retry_at`: when a window frees one
        message's room, not every notification waiting for it comes back at once, each to be held again."""
        window = None if self.gate is None else self.gate.shortest_window
        spread = min(window or 0, MOST_SPREAD)
        return retry_at + timedelta(seconds=random.uniform(0, spread))  # noqa: S311 - not a secret

    def throttled(self, error: BaseException) -> datetime | None:
        """Until when to hold a notification whose send failed with `error`: a throttling or quota reply
        (the pace drops, or sending pauses); None for any other failure."""
        hold = None if self.gate is None else self.gate.throttled(error)
        if hold is None:
            return None
        self._clear = False
        return hold.until

    async def hold(self, record: NotificationRecord, until: datetime, why: str) -> bool:
        """Put `record` back in the store until `until` (`why`: its last error), its claim not counted; False if
        its lease was lost."""
        held = await self._store.hold(record, until, why)
        if held:
            logger.info("notification %s %s, until %s", record.id, why, until.isoformat())
        return held

    def overdue(self, record: NotificationRecord) -> str | None:
        """Why `record` may be held no longer (DELIVERY_MAX_HOLD passed since its first hold), or None."""
        since = record.held_since
        if since is None or utcnow() - since < timedelta(seconds=self._max_hold):
            return None
        return (
            f"held back by sending limits or throttling replies since {since.isoformat()}, longer than "
            f"DELIVERY_MAX_HOLD ({self._max_hold:g} s); raise the limits (MAIL_RATE_LIMIT) or DELIVERY_MAX_HOLD"
        )
