"""Service settings: the API's own variables, and the mail settings beside them.

Both are read from the environment and from `.env` in the working directory (the
environment wins). `Settings.from_env()` reports every bad variable at once.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from .delivery.settings import DeliverySettings
from .mail import MailSettings, SettingsError
from .mail.core.loading import EnvSettings, SettingsT, describe_errors
from .notifications.settings import MessageSettings
from .observability.logs import LogSettings
from .observability.metrics import MetricsSettings, multiprocess_dir_problem
from .ratelimit.settings import LimitsInForce, RateLimitSettings, limits_in_force
from .store import StoreSettings

MIN_API_KEY_LENGTH = 16
MIN_API_KEY_BITS = 64
"""The least strength of a key by `estimated_bits`; a `secrets.token_urlsafe(32)` key has over 200."""
CHARACTER_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
OTHER_CHARACTERS = 33
"""The size of the class of every other character (ASCII punctuation and space)."""
CLIENT_NAME = re.compile(r"[a-z0-9_-]{1,64}")
DEFAULT_CLIENT = "default"
"""The client of an API_KEYS entry without a name."""
PLACEHOLDER_MARKERS = ("change-me", "changeme", "example", "placeholder", "your-", "your_", "replace-me")
"""Parts of keys copied from documentation (`.env.example`); refused unless DEV_MODE is on."""
DOMAIN = re.compile(r"[^\s@*,/]+\.[^\s@*,/.]+")
GENERATE_KEY_HINT = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


@dataclass(frozen=True)
class ApiKey:
    """One entry of API_KEYS: a bearer key and the client it belongs to (every key of a client is equal)."""

    client: str
    secret: SecretStr


def parse_api_key(entry: str) -> ApiKey:
    """`name:key`, or a bare key of the client `default`."""
    if ":" not in entry:
        return ApiKey(DEFAULT_CLIENT, SecretStr(entry))
    name, _, secret = entry.partition(":")
    if not CLIENT_NAME.fullmatch(name.strip()):
        raise ValueError("a client name is lowercase letters, digits, - and _ (at most 64), as in name:key")
    return ApiKey(name.strip(), SecretStr(secret.strip()))


def estimated_bits(key: str) -> float:
    """How hard `key` is to guess: its length times log2 of the alphabet it seems drawn from.

    That alphabet is the size for which a random key of this length would show as many different
    characters as `key` does, at most that of the character classes it uses (26 lowercase letters,
    26 uppercase, 10 digits, 33 others): sixteen `a` seem drawn from 1 character (0 bits), 32 hex
    digits from about 16 or more (128 bits or more).
    """
    if not key:
        return 0.0
    length, distinct = len(key), set(key)
    classes = sum(len(chars) for chars in CHARACTER_CLASSES if distinct & set(chars))
    if distinct - set().union(*CHARACTER_CLASSES):
        classes += OTHER_CHARACTERS

    def shown(alphabet: float) -> float:
        """How many different characters a random key of this length from `alphabet` has, on average."""
        return alphabet * (1 - (1 - 1 / alphabet) ** length)

    low, high = float(len(distinct)), float(classes)
    if shown(high) > len(distinct):  # bisect: shown() grows with the alphabet
        for _ in range(50):
            middle = (low + high) / 2
            low, high = (middle, high) if shown(middle) < len(distinct) else (low, middle)
    return length * math.log2(high)


class RecipientLimit(EnvSettings):
    """The most recipients of one notification: the API refuses more{% if cookiecutter.delivery == "celery" %}, a Celery worker's time limit counts them{% endif %}."""

    # a ValidationError's text must not carry API_KEYS
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    max_recipients: int = Field(
        default=50, ge=1, le=1000, description="Most recipients (to + cc) in one notification."
    )


class ApiSettings(RecipientLimit):
    """Who may call the API and how large a request may be."""

    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = Field(
        description=(
            "Comma-separated bearer keys, each `client:key` (client: lowercase letters, digits, - and _) or a "
            "bare key (client `default`); a client sees only its own notifications. List several keys of one "
            "client to rotate without downtime."
        )
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
    max_request_bytes_in_flight: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description=(
            "Most request-body bytes all requests to one process may hold at once; a request that would "
            "exceed it gets 503 with Retry-After."
        ),
    )
    api_body_timeout: float = Field(
        default=10,
        gt=0,
        le=300,
        description="Seconds a client may take to send a request body; slower ones get 408.",
    )
    api_auth_failures: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description=(
            "Failed authentications (a wrong key) one client address may make within API_AUTH_WINDOW; then "
            "its requests to authenticated routes get 429 with Retry-After, unchecked, until the window ends."
        ),
    )
    api_auth_window: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="Seconds from an address's first failed authentication in which API_AUTH_FAILURES count.",
    )
    allowed_recipient_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated domains notifications may go to, each with its subdomains "
            "(example.com allows a.example.com); empty: any domain."
        ),
    )
    max_schedule_ahead: int = Field(
        default=30 * 86_400,
        ge=0,
        le=366 * 86_400,
        description="Seconds ahead a notification's send_at may be; further gets 422.",
    )
    dev_mode: bool = Field(default=False, description="Development only: mount the dev inbox at /dev/inbox.")
    dev_smtp_dir: Path = Field(
        default=Path(".dev-smtp"), description="Folder of the embedded dev SMTP server (CA and inbox)."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(parse_api_key(entry.strip()) for entry in value.split(",") if entry.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
        if not keys:
            raise ValueError("set at least one key (comma-separated for rotation)")
        secrets = [key.secret.get_secret_value() for key in keys]
        if any(len(secret) < MIN_API_KEY_LENGTH for secret in secrets):
            raise ValueError(f"every key needs at least {MIN_API_KEY_LENGTH} characters; {GENERATE_KEY_HINT}")
        if any(estimated_bits(secret) < MIN_API_KEY_BITS for secret in secrets):
            raise ValueError(
                f"a key is too easy to guess (under {MIN_API_KEY_BITS} bits: too few different characters, "
                f"see the README's API keys and clients); {GENERATE_KEY_HINT}"
            )
        owners = {key.secret.get_secret_value(): key.client for key in keys}
        if any(owners[key.secret.get_secret_value()] != key.client for key in keys):
            raise ValueError("one key is listed for two clients; give each client keys of its own")
        return keys

    @model_validator(mode="after")
    def _refuse_placeholder_keys(self) -> ApiSettings:
        if not self.dev_mode and any(is_placeholder(key.secret) for key in self.api_keys):
            raise ValueError(
                "API_KEYS: a key is a placeholder from the documentation (allowed only with DEV_MODE=true); "
                + GENERATE_KEY_HINT
            )
        return self

    @model_validator(mode="after")
    def _check_bytes_in_flight(self) -> ApiSettings:
        if self.max_request_bytes_in_flight < self.max_request_bytes:
            raise ValueError("MAX_REQUEST_BYTES_IN_FLIGHT must be at least MAX_REQUEST_BYTES")
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
    messages: MessageSettings = field(default_factory=MessageSettings)

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
        messages = _load(MessageSettings, problems)
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
            or messages is None
        ):
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return cls(
            api=api,
            mail=mail,
            store=store,
            delivery=delivery,
            logs=logs,
            metrics=metrics,
            limits=limits,
            messages=messages,
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
