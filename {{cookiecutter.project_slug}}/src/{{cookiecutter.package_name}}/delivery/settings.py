"""How delivery claims, retries and stops: the `DELIVERY_*` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ..mail.core.loading import EnvSettings

HOUR = 3600
DAY = 24 * HOUR


class DeliverySettings(EnvSettings):
    """How the delivery core claims and retries notifications, from `DELIVERY_*` variables."""

    model_config = SettingsConfigDict(env_prefix="DELIVERY_")

    lease: float = Field(
        default=60.0,
        ge=1,
        le=DAY,
        description=(
            "Seconds a sender holds a notification it claimed; if its process dies, the notification is sent "
            "again after this. A running send renews it every third of this."
        ),
    )
    concurrency: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Notifications one process sends at once (waiting for an SMTP session included).",
    )
    max_attempts: int = Field(
        default=25,
        ge=1,
        le=1000,
        description="Attempts before a transiently failing notification becomes failed.",
    )
    retry_backoff: float = Field(
        default=2.0,
        gt=0,
        le=HOUR,
        description="Seconds before the first retry; doubles with each, plus jitter.",
    )
    retry_unknown_outcome: bool = Field(
        default=True,
        description=(
            "Send once more, after DELIVERY_RETRY_BACKOFF and with the same Message-ID, a message whose end of DATA got "
            "no reply (connection lost, or no answer within MAIL_DATA_TIMEOUT): nothing is lost, at the price of a rare "
            "duplicate; a second unknown outcome fails it. false: it fails at once (at most once)."
        ),
    )
    retry_backoff_max: float = Field(
        default=600.0, gt=0, le=DAY, description="Longest wait between retries, in seconds."
    )
    poll_interval: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between looks for due retries and expired leases."
    )
    shutdown_timeout: float = Field(
        default=10.0,
        ge=0,
        le=HOUR,
        description=(
            "Seconds a stopping process waits for its sends in flight; those whose message has not gone out stay "
            "queued, those the server holds (end of DATA sent) get their reply, MAIL_DATA_TIMEOUT at most."
        ),
    )
    max_hold: float = Field(
        default=3 * DAY,
        ge=60,
        le=30 * DAY,
        description=(
            "Seconds a notification may be held back by sending limits and throttling replies (they are not "
            "attempts) since its last attempt; beyond, it fails saying so."
        ),
    )
