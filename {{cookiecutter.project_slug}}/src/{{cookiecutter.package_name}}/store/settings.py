"""Where notifications are kept, and for how long."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..mail.core.loading import EnvSettings

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///notifications.db"
DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
HOUR = 3600
DAY = 24 * HOUR


class StoreSettings(EnvSettings):
    """The notification store: `DATABASE_URL`, idempotency keys and retention."""

    model_config = SettingsConfigDict(hide_input_in_errors=True)  # DATABASE_URL may hold a password

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
