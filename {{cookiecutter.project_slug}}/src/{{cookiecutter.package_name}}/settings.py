"""Service settings: the API's own variables, and the mail settings beside them.

Both are read from the environment and from `.env` in the working directory (the
environment wins). `Settings.from_env()` reports every bad variable at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .delivery.settings import DeliverySettings
from .mail import MailSettings, SettingsError
from .mail.core.loading import SettingsT, describe_errors
from .observability.logs import LogSettings
from .observability.metrics import MetricsSettings, multiprocess_dir_problem
from .ratelimit.settings import LimitsInForce, RateLimitSettings, limits_in_force
from .store import StoreSettings

MIN_API_KEY_LENGTH = 16
PLACEHOLDER_MARKERS = ("change-me", "changeme", "example", "placeholder", "your-", "your_", "replace-me")
"""Parts of keys copied from documentation (`.env.example`); refused unless DEV_MODE is on."""
DOMAIN = re.compile(r"[^\s@*,/]+\.[^\s@*,/.]+")
GENERATE_KEY_HINT = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


class RecipientLimit(BaseSettings):
    """The most recipients of one notification: the API refuses more{% if cookiecutter.delivery == "celery" %}, a Celery worker's time limit counts them{% endif %}."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a ValidationError's text must not carry API_KEYS
    )

    max_recipients: int = Field(
        default=50, ge=1, le=1000, description="Most recipients (to + cc) in one notification."
    )


class ApiSettings(RecipientLimit):
    """Who may call the API and how large a request may be."""

    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        description="Comma-separated bearer keys accepted by the API; list several to rotate keys without downtime."
    )
    max_body_bytes: int = Field(
        default=100 * 1024,
        ge=1,
        le=10 * 1024 * 1024,
        description="Largest notification body, in UTF-8 bytes.",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest HTTP request body, in bytes; larger ones get 413 before they are read.",
    )
    api_body_timeout: float = Field(
        default=10,
        gt=0,
        le=300,
        description="Seconds a client may take to send a request body; slower ones get 408.",
    )
    allowed_recipient_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated domains notifications may go to, each with its subdomains "
            "(example.com allows a.example.com); empty: any domain."
        ),
    )
    dev_mode: bool = Field(default=False, description="Development only: mount the dev inbox at /dev/inbox.")
    dev_smtp_dir: Path = Field(
        default=Path(".dev-smtp"), description="Folder of the embedded dev SMTP server (CA and inbox)."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if not keys:
            raise ValueError("set at least one key (comma-separated for rotation)")
        if any(len(key.get_secret_value()) < MIN_API_KEY_LENGTH for key in keys):
            raise ValueError(f"every key needs at least {MIN_API_KEY_LENGTH} characters; {GENERATE_KEY_HINT}")
        return keys

    @model_validator(mode="after")
    def _refuse_placeholder_keys(self) -> ApiSettings:
        if not self.dev_mode and any(is_placeholder(key) for key in self.api_keys):
            raise ValueError(
                "API_KEYS: a key is a placeholder from the documentation (allowed only with DEV_MODE=true); "
                + GENERATE_KEY_HINT
            )
        return self

    @field_validator("allowed_recipient_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(domain.strip().lower().rstrip(".") for domain in value.split(",") if domain.strip())
        return value

    @field_validator("allowed_recipient_domains")
    @classmethod
    def _check_domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        if not all(DOMAIN.fullmatch(domain) for domain in domains):
            raise ValueError("list bare domains such as example.com (their subdomains are included)")
        return domains


def is_placeholder(key: SecretStr) -> bool:
    """Whether `key` looks copied from documentation rather than generated."""
    value = key.get_secret_value().lower()
    return any(marker in value for marker in PLACEHOLDER_MARKERS)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    api: ApiSettings
    mail: MailSettings
    store: StoreSettings
    delivery: DeliverySettings
    logs: LogSettings
    metrics: MetricsSettings
    limits: RateLimitSettings

    @property
    def limits_in_force(self) -> LimitsInForce:
        """The rate limits enforced: the variables', else the documented defaults of MAIL_SERVER's provider."""
        return limits_in_force(self.limits, self.mail.server)

    @classmethod
    def from_env(cls) -> Settings:
        """Load every group; raise `SettingsError` naming every bad variable (never a value)."""
        problems: list[str] = []
        api = _load(ApiSettings, problems)
        mail = _load(MailSettings, problems)
        store = _load(StoreSettings, problems)
        delivery = _load(DeliverySettings, problems)
        logs = _load(LogSettings, problems)
        metrics = _load(MetricsSettings, problems)
        limits = _load(RateLimitSettings, problems)
        if api is not None and mail is not None and limits is not None:
            problem = limits_in_force(limits, mail.server).recipient_problem(api.max_recipients)
            problems.extend([problem] if problem else [])
        if (
            problems
            or api is None
            or mail is None
            or store is None
            or delivery is None
            or logs is None
            or metrics is None
            or limits is None
        ):
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return cls(
            api=api, mail=mail, store=store, delivery=delivery, logs=logs, metrics=metrics, limits=limits
        )


def check_metrics_dir(metrics: MetricsSettings) -> None:
    """Raise `SettingsError` when metrics are on but PROMETHEUS_MULTIPROC_DIR cannot be used (each process checks
    as it starts: the folder is the running process's)."""
    problem = multiprocess_dir_problem() if metrics.enabled else None
    if problem is not None:
        raise SettingsError(f"invalid settings: {problem}")


def _load(model: type[SettingsT], problems: list[str]) -> SettingsT | None:
    try:
        return model()
    except ValidationError as error:
        problems.extend(describe_errors(model, error))
        return None
