"""What a notification may carry and where its templates live: the `MAIL_*` variables of messages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ..mail.core.loading import EnvSettings

PACKAGED_TEMPLATES = Path(__file__).parents[1] / "templates" / "email"
DAY = 24 * 3600
DANGEROUS_TYPES = (
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-sh",
    "application/x-executable",
    "application/java-archive",
    "application/vnd.microsoft.portable-executable",
    "text/javascript",
    "application/javascript",
    "application/hta",
)


class MessageSettings(EnvSettings):
    """Templates, attachments and unsubscribe links of notifications."""

    model_config = SettingsConfigDict(env_prefix="MAIL_", hide_input_in_errors=True)

    templates_dir: Path | None = Field(
        default=None,
        description="Folder of the email templates, one subfolder per template; unset: the package's own.",
    )
    max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=0,
        le=100 * 1024 * 1024,
        description="Most bytes (decoded) of all attachments of one notification; 0 refuses attachments.",
    )
    refused_attachment_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DANGEROUS_TYPES,
        description="Comma-separated content types attachments may not have (executables and scripts by default).",
    )
    unsubscribe_url: str = Field(
        default="",
        description=(
            "Public HTTPS address of this service (https://mail.example.com): bulk notifications link to "
            "<it>/unsubscribe/<token> in List-Unsubscribe; unset: bulk notifications are refused."
        ),
    )
    unsubscribe_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Key that signs unsubscribe tokens (32 or more random characters); needed with MAIL_UNSUBSCRIBE_URL.",
    )
    unsubscribe_mailto: str = Field(
        default="",
        description="Optional address for `mailto:` unsubscribing, listed in List-Unsubscribe too.",
    )
    unsubscribe_ttl: int = Field(
        default=60 * DAY, ge=3600, le=3650 * DAY, description="Seconds an unsubscribe link stays valid."
    )

    @field_validator("refused_attachment_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip().lower() for item in value.split(",") if item.strip())
        return value

    @model_validator(mode="after")
    def _check_unsubscribe(self) -> MessageSettings:
        if self.unsubscribe_url:
            local = self.unsubscribe_url.startswith(("http://localhost", "http://127.0.0.1"))
            if not (self.unsubscribe_url.startswith("https://") or local):
                raise ValueError("MAIL_UNSUBSCRIBE_URL must start with https:// (http:// only for localhost)")
            if len(self.unsubscribe_secret.get_secret_value()) < 32:
                raise ValueError(
                    "MAIL_UNSUBSCRIBE_SECRET needs 32 or more characters with MAIL_UNSUBSCRIBE_URL; generate one "
                    "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return self

    @property
    def templates_folder(self) -> Path:
        """MAIL_TEMPLATES_DIR, else the templates shipped in the package."""
        return self.templates_dir or PACKAGED_TEMPLATES

    @property
    def unsubscribe_enabled(self) -> bool:
        """Whether bulk notifications can carry List-Unsubscribe."""
        return bool(self.unsubscribe_url)
