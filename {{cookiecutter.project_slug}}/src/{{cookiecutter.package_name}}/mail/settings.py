"""SMTP settings read from `MAIL_*` environment variables and `.env`.

Every rule that fastapi-mail would only discover at send time (both TLS modes at
once, a port that does not match the TLS mode, a login sent in clear text) is
checked here, when the settings load.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import ssl
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi_mail import ConnectionConfig
from pydantic import (
    AliasChoices,
    EmailStr,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .headers import header_problem

STARTTLS_PORTS = frozenset({587, 2587})
IMPLICIT_TLS_PORTS = frozenset({465, 2465})

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105 - a URL
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
DEFAULT_SCOPES = {"microsoft": "https://outlook.office365.com/.default", "google": "https://mail.google.com/"}

if TYPE_CHECKING:
    from .dkim import DkimSigner

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
    data_timeout: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="Seconds to wait for the reply to the end of a message (RFC 5321 4.5.3.2: 10 minutes).",
    )
    login_cooldown: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Seconds without a new login after the server refused one, so a wrong password cannot lock the account.",
    )
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
    auth: Literal["password", "xoauth2"] = Field(
        default="password",
        description="How to log in: `password` (AUTH PLAIN/LOGIN) or `xoauth2` (an OAuth2 bearer token).",
    )
    oauth_provider: Literal["microsoft", "google", "generic"] | None = Field(
        default=None,
        description="Where MAIL_AUTH=xoauth2 gets its token: `microsoft`, `google` or `generic`.",
    )
    oauth_tenant_id: str = Field(default="", description="Microsoft Entra tenant id (or domain).")
    oauth_client_id: str = Field(default="", description="OAuth2 client (application) id.")
    oauth_client_secret: SecretStr = Field(
        default=SecretStr(""), description="OAuth2 client secret; never printed or logged."
    )
    oauth_certificate_file: FilePath | None = Field(
        default=None,
        description="Microsoft: PEM file with the app's certificate and private key (instead of a secret).",
    )
    oauth_service_account_file: FilePath | None = Field(
        default=None,
        description="Google: service account JSON key with domain-wide delegation; MAIL_USERNAME is the mailbox.",
    )
    oauth_refresh_token: SecretStr = Field(
        default=SecretStr(""), description="Google installed app: the refresh token; never printed or logged."
    )
    oauth_token_url: str = Field(
        default="",
        description="Token endpoint; required for `generic`, overrides the Microsoft or Google default.",
    )
    oauth_scope: str = Field(
        default="", description="Scope requested; defaults to the provider's SMTP scope."
    )
    dkim_domain: str = Field(
        default="",
        description="DKIM signing domain (d=): MAIL_FROM's domain or a parent of it. Empty: no signing.",
    )
    dkim_selector: str = Field(
        default="", description="DKIM selector (s=): the key is published at SELECTOR._domainkey.DOMAIN."
    )
    dkim_private_key_file: FilePath | None = Field(
        default=None,
        description="PEM file of the DKIM private key (RSA 2048+ bits or Ed25519; `dkim-keygen` writes one).",
    )
    dkim_private_key: SecretStr = Field(
        default=SecretStr(""),
        description="The DKIM private key as PEM text, instead of MAIL_DKIM_PRIVATE_KEY_FILE; never printed.",
    )
    dns_server: str = Field(
        default="",
        description="Resolver for `check-mail --deliverability`, as host or host:port. Empty: the system's.",
    )

    @field_validator("from_name")
    @classmethod
    def _header_safe(cls, name: str) -> str:
        problem = header_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _check_security(self) -> MailSettings:
        problems = [*security_problems(self), *oauth_problems(self), *dkim_problems(self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _load_cert_bundle(self) -> MailSettings:
        if self.cert_bundle is not None:
            try:
                self.tls_context  # noqa: B018 - built now, so a bad file stops start-up, not every send
            except (ssl.SSLError, OSError) as error:
                reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
                raise ValueError(
                    f"MAIL_CERT_BUNDLE={self.cert_bundle} is not a PEM file of CA certificates ({reason}): "
                    "point it at the CA certificate(s) that signed the server's, in PEM form (-----BEGIN CERTIFICATE-----)"
                ) from None
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

    @property
    def oauth_token_endpoint(self) -> str:
        """The token URL: MAIL_OAUTH_TOKEN_URL, else the provider's (a service account's own `token_uri`)."""
        if self.oauth_token_url:
            return self.oauth_token_url
        if self.oauth_provider == "microsoft":
            return MICROSOFT_TOKEN_URL.format(tenant=self.oauth_tenant_id)
        if self.oauth_service_account_file is not None:
            return str(service_account_key(self.oauth_service_account_file).get("token_uri", ""))
        return GOOGLE_TOKEN_URL if self.oauth_provider == "google" else ""

    @property
    def oauth_scopes(self) -> str:
        """MAIL_OAUTH_SCOPE, else the provider's scope for SMTP."""
        return self.oauth_scope or DEFAULT_SCOPES.get(self.oauth_provider or "", "")

    @cached_property
    def dkim_signer(self) -> DkimSigner | None:
        """The DKIM signer, or None when MAIL_DKIM_DOMAIN is unset. Raises `DkimKeyError`."""
        if not self.dkim_domain:
            return None
        from .dkim import DkimSigner, load_key

        if self.dkim_private_key_file is not None:
            pem = self.dkim_private_key_file.read_bytes()
        else:
            pem = self.dkim_private_key.get_secret_value().replace("\\n", "\n").encode()
        return DkimSigner(self.dkim_domain.lower().rstrip("."), self.dkim_selector, load_key(pem))

    def secret_forms(self) -> tuple[str, ...]:
        """Secrets as they may appear in text: the password plain, base64 (AUTH LOGIN) and as the
        AUTH PLAIN blob; the OAuth2 client secret and refresh token.

        Every error and diagnosis hides each of these.
        """
        forms = [
            secret.get_secret_value()
            for secret in (self.oauth_client_secret, self.oauth_refresh_token)
            if secret.get_secret_value()
        ]
        password = self.password.get_secret_value()
        if password:
            plain_blob = b"\0" + self.username.encode() + b"\0" + password.encode()
            forms += (
                password,
                base64.b64encode(password.encode()).decode(),
                base64.b64encode(plain_blob).decode(),
            )
        return tuple(forms)

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
                ("MAIL_PASSWORD", settings.password.get_secret_value() or settings.auth != "password"),
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


def security_warnings(settings: MailSettings) -> list[str]:
    """Settings that work but are unsafe, one line each (logged at start-up, printed by check-mail)."""
    if settings.encrypted and not settings.validate_certs:
        return [
            "MAIL_VALIDATE_CERTS=false: the server certificate is not verified, so anyone on the network path "
            "can pose as the server and read the mail and the password; set MAIL_CERT_BUNDLE to the CA file "
            "of a private server instead"
        ]
    return []


def oauth_problems(settings: MailSettings) -> list[str]:
    """Each reason the MAIL_AUTH=xoauth2 settings cannot get a token, naming the variables to set."""
    if settings.auth != "xoauth2":
        return []
    provider = settings.oauth_provider
    if provider is None:
        return ["MAIL_OAUTH_PROVIDER must be microsoft, google or generic when MAIL_AUTH=xoauth2"]
    has_secret = bool(settings.oauth_client_secret.get_secret_value())
    required: list[tuple[str, object]] = []
    problems: list[str] = []
    if provider == "microsoft":
        required = [("MAIL_OAUTH_CLIENT_ID", settings.oauth_client_id)]
        if not settings.oauth_token_url:
            required.append(("MAIL_OAUTH_TENANT_ID", settings.oauth_tenant_id))
        if has_secret == (settings.oauth_certificate_file is not None):
            problems.append(
                "MAIL_OAUTH_PROVIDER=microsoft needs exactly one of MAIL_OAUTH_CLIENT_SECRET and "
                "MAIL_OAUTH_CERTIFICATE_FILE"
            )
        elif settings.oauth_certificate_file is not None:
            problems += certificate_problems(settings.oauth_certificate_file)
    elif provider == "google" and settings.oauth_service_account_file is not None:
        if settings.oauth_refresh_token.get_secret_value():
            problems.append("set MAIL_OAUTH_SERVICE_ACCOUNT_FILE or MAIL_OAUTH_REFRESH_TOKEN, not both")
        problems += service_account_problems(settings.oauth_service_account_file)
    elif provider == "google":
        required = [
            ("MAIL_OAUTH_CLIENT_ID", settings.oauth_client_id),
            ("MAIL_OAUTH_CLIENT_SECRET", has_secret),
            ("MAIL_OAUTH_REFRESH_TOKEN", settings.oauth_refresh_token.get_secret_value()),
        ]
    else:
        required = [
            ("MAIL_OAUTH_TOKEN_URL", settings.oauth_token_url),
            ("MAIL_OAUTH_CLIENT_ID", settings.oauth_client_id),
            ("MAIL_OAUTH_CLIENT_SECRET", has_secret),
        ]
    missing = [name for name, value in required if not value]
    if missing:
        alternative = (
            " (or MAIL_OAUTH_SERVICE_ACCOUNT_FILE, a service account key)" if provider == "google" else ""
        )
        problems.append(
            f"{' and '.join(missing)} must be set when MAIL_OAUTH_PROVIDER={provider}{alternative}"
        )
    if not problems:
        problems += token_url_problems(settings.oauth_token_endpoint)
    return problems


def token_url_problems(url: str) -> list[str]:
    """Why `url` cannot be a token endpoint: not https (plain http only on loopback), or no host."""
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        return ["MAIL_OAUTH_TOKEN_URL must be an https:// URL of the token endpoint"]
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return [
            f"MAIL_OAUTH_TOKEN_URL uses http:// for {parts.hostname}, which would send the client secret "
            "in clear text: use https:// (plain http only for a loopback host)"
        ]
    return []


def service_account_key(path: Path) -> dict[str, Any]:
    """The fields of a Google service account JSON key file ({} if it is not a JSON object)."""
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return key if isinstance(key, dict) else {}


def service_account_problems(path: Path) -> list[str]:
    """Why `path` is not a usable service account key (never quoting the key)."""
    key = service_account_key(path)
    fields = ("client_email", "private_key", "token_uri")
    if key.get("type") != "service_account" or not all(isinstance(key.get(name), str) for name in fields):
        return [
            "MAIL_OAUTH_SERVICE_ACCOUNT_FILE is not a service account JSON key (type service_account with "
            "client_email, private_key and token_uri): download one in Google Cloud console > IAM > "
            "Service accounts > Keys"
        ]
    try:
        load_pem_private_key(str(key["private_key"]).encode(), password=None)
    except (ValueError, TypeError):
        return ["MAIL_OAUTH_SERVICE_ACCOUNT_FILE: its private_key is not an unencrypted PEM private key"]
    return []


def certificate_problems(path: Path) -> list[str]:
    """Why `path` is not a PEM file holding both a certificate and its unencrypted private key."""
    try:
        pem = path.read_bytes()
        x509.load_pem_x509_certificate(pem)
        load_pem_private_key(pem, password=None)
    except (OSError, ValueError, TypeError):
        return [
            "MAIL_OAUTH_CERTIFICATE_FILE must be a PEM file with the app's certificate and its "
            "unencrypted private key (cat cert.pem key.pem > app.pem)"
        ]
    return []


def dkim_problems(settings: MailSettings) -> list[str]:
    """Each reason the DKIM settings cannot sign, naming the variables; loads the key once."""
    from .dkim import DkimKeyError

    key_set = settings.dkim_private_key_file is not None or bool(settings.dkim_private_key.get_secret_value())
    if not (settings.dkim_domain or settings.dkim_selector or key_set):
        return []
    missing = [
        name
        for name, value in (
            ("MAIL_DKIM_DOMAIN", settings.dkim_domain),
            ("MAIL_DKIM_SELECTOR", settings.dkim_selector),
        )
        if not value
    ]
    if not key_set:
        missing.append("MAIL_DKIM_PRIVATE_KEY_FILE (or MAIL_DKIM_PRIVATE_KEY)")
    if missing:
        return [f"DKIM signing needs {' and '.join(missing)} too (or unset every MAIL_DKIM_* variable)"]
    if settings.dkim_private_key_file is not None and settings.dkim_private_key.get_secret_value():
        return ["set MAIL_DKIM_PRIVATE_KEY_FILE or MAIL_DKIM_PRIVATE_KEY, not both"]
    domain = settings.dkim_domain.lower().rstrip(".")
    from_domain = str(settings.from_address).rpartition("@")[2].lower()
    if from_domain != domain and not from_domain.endswith("." + domain):
        return [
            f"MAIL_DKIM_DOMAIN={settings.dkim_domain} does not align with MAIL_FROM's domain {from_domain}, "
            "so DMARC ignores the signature: set MAIL_DKIM_DOMAIN to that domain (or a parent of it)"
        ]
    variable = (
        "MAIL_DKIM_PRIVATE_KEY_FILE"
        if settings.dkim_private_key_file is not None
        else "MAIL_DKIM_PRIVATE_KEY"
    )
    try:
        settings.dkim_signer  # noqa: B018 - loads and caches the key
    except DkimKeyError as error:
        return [f"{variable} {error}"]
    except OSError as error:
        return [f"{variable} could not be read ({type(error).__name__}): check the path and its permissions"]
    return []


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
