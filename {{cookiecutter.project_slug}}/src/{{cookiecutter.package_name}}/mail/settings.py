"""SMTP settings read from `MAIL_*` environment variables and `.env`.

Every rule that fastapi-mail would only discover at send time (both TLS modes at
once, a port that does not match the TLS mode, a login sent in clear text) is
checked here, when the settings load.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import ssl
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from fastapi_mail import ConnectionConfig
from pydantic import (
    AliasChoices,
    EmailStr,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

STARTTLS_PORTS = frozenset({587, 2587})
IMPLICIT_TLS_PORTS = frozenset({465, 2465})

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class SettingsError(ValueError):
    """Configuration that cannot work; the message names each bad variable, never a value."""


class MailSettings(BaseSettings):
    """How to reach and log in to the SMTP server, and how hard to try."""

    model_config = SettingsConfigDict(
        env_prefix="MAIL_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a ValidationError's text must not carry MAIL_PASSWORD
    )

    server: str = Field(min_length=1, description="SMTP host name or IP address.")
    port: int = Field(
        ge=1, le=65535, description="SMTP port: usually 587 for STARTTLS, 465 for implicit TLS."
    )
    username: str = Field(default="", description="Login user name.")
    password: SecretStr = Field(default=SecretStr(""), description="Login password; never printed or logged.")
    from_address: EmailStr = Field(
        validation_alias=AliasChoices("MAIL_FROM"),  # only MAIL_FROM: no unprefixed FROM_ADDRESS
        description="Sender address (the From header).",
    )
    from_name: str = Field(default="", description="Sender display name.")
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS (port 587).")
    ssl_tls: bool = Field(default=False, description="Connect with implicit TLS (port 465).")
    use_credentials: bool = Field(default=True, description="Log in with MAIL_USERNAME and MAIL_PASSWORD.")
    validate_certs: bool = Field(default=True, description="Verify the server certificate and host name.")
    cert_bundle: FilePath | None = Field(
        default=None, description="PEM file of extra CA certificates to trust, besides the system ones."
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds allowed for each SMTP step.")
    allow_port_mismatch: bool = Field(
        default=False,
        description="Accept a port that does not match the TLS mode (465 with STARTTLS, 587 with implicit TLS).",
    )
    pool_size: int = Field(default=4, ge=1, le=64, description="SMTP sessions kept open for sending.")
    pool_idle_timeout: float = Field(
        default=30.0, gt=0, description="Seconds an idle pooled session is kept before it is closed."
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of a transient failure (4xx reply, timeout, lost connection).",
    )
    retry_base_delay: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="Seconds before the first retry; doubles with each retry, plus jitter.",
    )

    @model_validator(mode="after")
    def _check_security(self) -> MailSettings:
        problems = list(security_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def encrypted(self) -> bool:
        """True when the session is protected by TLS (implicit or STARTTLS)."""
        return self.starttls or self.ssl_tls

    @cached_property
    def tls_context(self) -> ssl.SSLContext:
        """One TLS context for every connection: system CAs plus MAIL_CERT_BUNDLE."""
        context = ssl.create_default_context()
        if self.cert_bundle is not None:
            context.load_verify_locations(cafile=str(self.cert_bundle))
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def secret_forms(self) -> tuple[str, ...]:
        """The password as it may appear in SMTP text: plain, base64 (AUTH LOGIN), the AUTH PLAIN blob.

        Every error and diagnosis hides each of these.
        """
        password = self.password.get_secret_value()
        if not password:
            return ()
        plain_blob = b"\0" + self.username.encode() + b"\0" + password.encode()
        return (
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(plain_blob).decode(),
        )

    def connection_config(self, template_folder: Path | None = None) -> ConnectionConfig:
        """The same settings as a `fastapi_mail.ConnectionConfig`."""
        return ConnectionConfig(
            MAIL_USERNAME=self.username,
            MAIL_PASSWORD=self.password,
            MAIL_PORT=self.port,
            MAIL_SERVER=self.server,
            MAIL_STARTTLS=self.starttls,
            MAIL_SSL_TLS=self.ssl_tls,
            MAIL_FROM=self.from_address,
            MAIL_FROM_NAME=self.from_name or None,
            USE_CREDENTIALS=self.use_credentials,
            VALIDATE_CERTS=self.validate_certs,
            CERT_BUNDLE=str(self.cert_bundle) if self.cert_bundle else None,
            TIMEOUT=math.ceil(self.timeout),
            TEMPLATE_FOLDER=template_folder,
            SUPPRESS_SEND=0,
            MAIL_DEBUG=0,
        )


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, where clear text never leaves the machine."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def security_problems(settings: MailSettings) -> list[str]:
    """Each reason these settings cannot work safely, naming the variables to change."""
    problems: list[str] = []
    if settings.starttls and settings.ssl_tls:
        problems.append(
            "MAIL_STARTTLS and MAIL_SSL_TLS are both true: set exactly one "
            "(MAIL_STARTTLS=true for port 587, MAIL_SSL_TLS=true for port 465)"
        )
    elif not settings.allow_port_mismatch:
        if settings.starttls and settings.port in IMPLICIT_TLS_PORTS:
            problems.append(
                f"MAIL_PORT={settings.port} is an implicit-TLS port but MAIL_STARTTLS=true: "
                "use MAIL_PORT=587, or MAIL_SSL_TLS=true with MAIL_STARTTLS=false "
                "(MAIL_ALLOW_PORT_MISMATCH=true if your server really does this)"
            )
        if settings.ssl_tls and settings.port in STARTTLS_PORTS:
            problems.append(
                f"MAIL_PORT={settings.port} is a STARTTLS port but MAIL_SSL_TLS=true: "
                "use MAIL_PORT=465, or MAIL_STARTTLS=true with MAIL_SSL_TLS=false "
                "(MAIL_ALLOW_PORT_MISMATCH=true if your server really does this)"
            )
    if settings.use_credentials:
        missing = [
            name
            for name, value in (
                ("MAIL_USERNAME", settings.username),
                ("MAIL_PASSWORD", settings.password.get_secret_value()),
            )
            if not value
        ]
        if missing:
            problems.append(
                f"{' and '.join(missing)} must be set when MAIL_USE_CREDENTIALS=true "
                "(or set MAIL_USE_CREDENTIALS=false for a server without login)"
            )
        if not settings.encrypted and not is_loopback(settings.server):
            problems.append(
                f"MAIL_USE_CREDENTIALS=true without TLS would send the password in clear text to "
                f"{settings.server}: set MAIL_STARTTLS=true (port 587) or MAIL_SSL_TLS=true (port 465)"
            )
    return problems


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` (a field name or its alias) of `model`."""
    info = model.model_fields.get(field)
    if info is None:  # pydantic reports aliased fields by their alias, already the variable's name
        return field.upper()
    if isinstance(info.validation_alias, AliasChoices) and isinstance(info.validation_alias.choices[0], str):
        return info.validation_alias.choices[0]
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def describe_errors(model: type[BaseSettings], error: ValidationError) -> list[str]:
    """One message per bad variable, naming it; input values are never included."""
    messages: list[str] = []
    for detail in error.errors(include_input=False, include_url=False):
        location = detail["loc"]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if not location:
            messages.append(message)
        elif detail["type"] == "missing":
            messages.append(
                f"{env_name(model, str(location[0]))} is required: set it in the environment or .env (see .env.example)"
            )
        else:
            messages.append(f"{env_name(model, str(location[0]))}: {message}")
    return messages


def load_settings(model: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build `model` from the environment, raising `SettingsError` that names every bad variable."""
    try:
        return model(**overrides)
    except ValidationError as error:
        raise SettingsError("invalid settings: " + "; ".join(describe_errors(model, error))) from None
