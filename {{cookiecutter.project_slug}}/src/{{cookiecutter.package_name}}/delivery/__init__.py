"""Delivery: how committed notifications get sent. Each delivery option offers the same entry points.

The option's module (`{{ "queued" if cookiecutter.delivery == "celery" else "background" }}.py`) has `create_delivery(settings, store)`, which
returns a `Delivery` (`settings`: any `DeliveryContext`, such as the service's `Settings`);
`dispatcher.py` is the core every option runs.
"""

from __future__ import annotations

from typing import Protocol

from ..mail import MailSettings
from ..observability.metrics import MetricsSettings
from ..ratelimit.settings import LimitsInForce
from ..store import Priority, StoreSettings
from .settings import DeliverySettings


class Delivery(Protocol):
    """Sends the notifications the store holds."""

    async def start(self) -> None:
        """Begin sending, including what an earlier process left queued."""

    async def submit(self, notification_id: str, priority: Priority = Priority.NORMAL) -> None:
        """`notification_id` (of `priority`) was just committed: send it soon. Never raises for an outage."""

    async def aclose(self) -> None:
        """Stop taking work, finish what is in flight within a bounded time, release connections."""


class DeliveryContext(Protocol):
    """The settings a delivery reads: the service's `Settings` has them (and more)."""

    @property
    def mail(self) -> MailSettings: ...

    @property
    def delivery(self) -> DeliverySettings: ...

    @property
    def store(self) -> StoreSettings: ...

    @property
    def metrics(self) -> MetricsSettings: ...

    @property
    def limits_in_force(self) -> LimitsInForce: ...
