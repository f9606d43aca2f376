"""Where notifications are kept, and for how long; how hard delivery tries."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///notifications.db"
DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
HOUR = 3600
DAY = 24 * HOUR


class StoreSettings(BaseSettings):
    """The notification store: `DATABASE_URL`, idempotency keys and retention."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # DATABASE_URL may hold a password
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description=(
            "SQLAlchemy URL of the notification store: sqlite+aiosqlite:///file.db (embedded) or "
            "postgresql+asyncpg://user:password@host/db (several instances or workers); `make migrate` creates it."
        ),
    )
    idempotency_key_ttl: int = Field(
        default=DAY,
        ge=60,
        description="Seconds an Idempotency-Key is remembered (a repeat answers the first id).",
    )
    body_retention: int = Field(
        default=7 * DAY, ge=0, description="Seconds after sending that a notification's content is deleted."
    )
    row_retention: int = Field(
        default=30 * DAY,
        ge=0,
        description="Seconds after sending or failing that a notification's record (its status) is deleted.",
    )

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        try:
            driver = make_url(url).drivername
        except ArgumentError:
            driver = ""
        if driver not in DRIVERS:
            raise ValueError(
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:password@host:5432/database"
            )
        return url

    @model_validator(mode="after")
    def _check_retention(self) -> StoreSettings:
        if self.row_retention < self.body_retention:
            raise ValueError("ROW_RETENTION must be at least BODY_RETENTION")
        return self


class DeliverySettings(BaseSettings):
    """How the delivery core claims and retries notifications, from `DELIVERY_*` variables."""

    model_config = SettingsConfigDict(
        env_prefix="DELIVERY_", env_file=".env", env_ignore_empty=True, extra="ignore", frozen=True
    )

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
        description="Seconds a stopping process waits for its sends in flight; the rest stays queued.",
    )
