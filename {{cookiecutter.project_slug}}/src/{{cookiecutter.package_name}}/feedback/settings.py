"""What the service does with what it learns after delivery: soft-bounce suppression and outgoing events."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from standardwebhooks import Webhook

from ..mail.core.loading import EnvSettings

__all__ = ["FeedbackSettings"]

DAY = 86400
HOW_TO_GENERATE = "a whsec_ secret: `python -c 'import base64, os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())'`"


class FeedbackSettings(EnvSettings):
    """`SUPPRESSION_*`: when soft bounces suppress an address; `EVENTS_*`: where status changes are POSTed."""

    model_config = SettingsConfigDict(hide_input_in_errors=True)

    suppression_soft_bounces: int = Field(
        default=3,
        ge=0,
        le=1000,
        description=(
            "Soft bounces (mailbox full, ...) of one address within SUPPRESSION_SOFT_BOUNCE_WINDOW that put it on the "
            "suppression list (reason hard_bounce); 0: soft bounces never do."
        ),
    )
    suppression_soft_bounce_window: float = Field(
        default=7 * DAY, gt=0, le=365 * DAY, description="Seconds in which SUPPRESSION_SOFT_BOUNCES count."
    )
    events_webhook_url: str | None = Field(
        default=None,
        description=(
            "Your app's endpoint for outgoing events (http:// or https://): every status change is POSTed there, "
            "signed per Standard Webhooks. Empty: no outgoing events."
        ),
    )
    events_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The whsec_... secret that signs outgoing events (your app verifies with it).",
    )
    events_webhook_timeout: float = Field(
        default=10, gt=0, le=120, description="Seconds your app has to answer one outgoing event."
    )
    events_max_attempts: int = Field(
        default=30,
        ge=1,
        le=1000,
        description="Deliveries of one outgoing event before it is given up (kept in the store, status failed).",
    )
    events_retry_backoff: float = Field(
        default=5,
        gt=0,
        le=3600,
        description="Seconds before the first retry of an outgoing event; then doubling.",
    )
    events_retry_backoff_max: float = Field(
        default=3600, gt=0, le=DAY, description="Longest wait between two deliveries of an outgoing event."
    )

    @field_validator("events_webhook_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if not url or not url.strip():
            return None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("write it as https://your-app.example.com/hooks/mail (http:// or https://)")
        return url.strip()

    @field_validator("events_webhook_secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None or not secret.get_secret_value().strip():
            return None
        value = secret.get_secret_value().strip()
        if not value.startswith("whsec_"):
            raise ValueError(f"must start with whsec_: {HOW_TO_GENERATE}")
        try:
            Webhook(value)
        except Exception:  # binascii.Error, EmptyWebhookSecretError
            raise ValueError(f"is not whsec_ and base64 of at least 24 bytes: {HOW_TO_GENERATE}") from None
        if len(value) < len("whsec_") + 32:
            raise ValueError(f"is too short (24 random bytes at least): {HOW_TO_GENERATE}")
        return SecretStr(value)

    @model_validator(mode="after")
    def _url_needs_secret(self) -> FeedbackSettings:
        if self.events_webhook_url and self.events_webhook_secret is None:
            raise ValueError(f"EVENTS_WEBHOOK_URL is set: set EVENTS_WEBHOOK_SECRET too ({HOW_TO_GENERATE})")
        if self.events_retry_backoff_max < self.events_retry_backoff:
            raise ValueError("EVENTS_RETRY_BACKOFF_MAX must be at least EVENTS_RETRY_BACKOFF")
        return self

    @property
    def events_enabled(self) -> bool:
        """Whether status changes are written to the outbox for EVENTS_WEBHOOK_URL."""
        return self.events_webhook_url is not None
