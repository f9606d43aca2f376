"""Delivery: how committed notifications get sent. Both options offer the same entry points.

`create_delivery(settings, store)` in `background.py` (a dispatcher in the service process) or
`queued.py` (Celery workers) returns a `Delivery`; `dispatcher.py` is the core both run.
"""

from __future__ import annotations

from typing import Protocol


class Delivery(Protocol):
    """Sends the notifications the store holds."""

    async def start(self) -> None:
        """Begin sending, including what an earlier process left queued."""

    async def submit(self, notification_id: str) -> None:
        """`notification_id` was just committed: send it soon. Never raises for an outage."""

    async def aclose(self) -> None:
        """Stop taking work, finish what is in flight within a bounded time, release connections."""
