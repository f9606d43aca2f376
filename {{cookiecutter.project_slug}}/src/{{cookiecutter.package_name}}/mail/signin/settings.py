"""Sign-in settings: whether to log in, as whom, with a password or an OAuth2 token (`MAIL_AUTH`, `MAIL_OAUTH_*`)."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import Field, FilePath, SecretStr

from ..core.settings import SmtpSettings, is_loopback, key_file_warning
from ..extras import missing
from ..providers import OAUTH_PROVIDERS
from .oauth_checks import (
    certificate_problems,
    service_account_key,
    service_account_problems,
    token_url_problems,
)

__all__ = ["SigninSettings"]


class SigninSettings(SmtpSettings):
    """`SmtpSettings` plus how to log in."""

    use_credentials: bool = Field(default=True, description="Log in with MAIL_USERNAME and MAIL_PASSWORD.")
    username: str = Field(default="", description="Login user name (with XOAUTH2: the mailbox).")
    password: SecretStr = Field(default=SecretStr(""), description="Login password; never printed or logged.")
    login_cooldown: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Seconds without a new login after the server refused one, so a wrong password cannot lock the account.",
    )
    auth: Literal["password", "xoauth2"] = Field(
        default="password",
        description="How to log in: `password` (AUTH PLAIN/LOGIN/CRAM-MD5) or `xoauth2` (an OAuth2 bearer token).",
    )
    oauth_token_url: str = Field(
        default="",
        description="Token endpoint of any OAuth2 provider (client credentials); overrides a provider's default.",
    )
    oauth_client_id: str = Field(default="", description="OAuth2 client (application) id.")
    oauth_client_secret: SecretStr = Field(
        default=SecretStr(""), description="OAuth2 client secret; never printed or logged."
    )
    oauth_scope: str = Field(
        default="", description="Scope requested; defaults to the provider's SMTP scope."
    )
    oauth_provider: Literal["microsoft", "google", "generic"] | None = Field(
        default=None,
        description="Only for what MAIL_OAUTH_TOKEN_URL alone cannot do: `microsoft` (tenant URL, certificate) "
        "or `google` (service account, refresh token). Unset: the generic token source.",
    )
    oauth_tenant_id: str = Field(default="", description="Microsoft Entra tenant id (or domain).")
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

    def problems(self) -> list[str]:
        """The core's problems, then what keeps the login from working."""
        problems = super().problems()
        if not self.use_credentials:
            return problems
        missing_names = [
            name
            for name, value in (
                ("MAIL_USERNAME", self.username),
                ("MAIL_PASSWORD", self.password.get_secret_value() or self.auth != "password"),
            )
            if not value
        ]
        if missing_names:
            problems.append(
                f"{' and '.join(missing_names)} must be set when MAIL_USE_CREDENTIALS=true "
                "(or set MAIL_USE_CREDENTIALS=false for a server without login)"
            )
        if not self.encrypted and not is_loopback(self.server):
            problems.append(
                f"MAIL_USE_CREDENTIALS=true without TLS would send the password in clear text to "
                f"{self.server}: set MAIL_STARTTLS=true (port 587) or MAIL_SSL_TLS=true (port 465)"
            )
        if self.auth == "xoauth2":
            not_installed = missing("oauth", "MAIL_AUTH=xoauth2")
            problems += [not_installed] if not_installed else self._oauth_problems()
        return problems

    def warnings(self) -> list[str]:
        """The core's warnings, and OAuth2 key files other users of this machine can read."""
        files = (
            ("MAIL_OAUTH_CERTIFICATE_FILE", self.oauth_certificate_file),
            ("MAIL_OAUTH_SERVICE_ACCOUNT_FILE", self.oauth_service_account_file),
        )
        exposed = [key_file_warning(variable, path) for variable, path in files if path is not None]
        return [*super().warnings(), *filter(None, exposed)]

    def _oauth_problems(self) -> list[str]:
        """Each reason the MAIL_AUTH=xoauth2 settings cannot get a token, naming the variables to set."""
        provider = self.oauth_provider or "generic"
        has_secret = bool(self.oauth_client_secret.get_secret_value())
        required: list[tuple[str, object]] = []
        problems: list[str] = []
        if provider == "microsoft":
            required = [("MAIL_OAUTH_CLIENT_ID", self.oauth_client_id)]
            if not self.oauth_token_url:
                required.append(("MAIL_OAUTH_TENANT_ID", self.oauth_tenant_id))
            if has_secret == (self.oauth_certificate_file is not None):
                problems.append(
                    "MAIL_OAUTH_PROVIDER=microsoft needs exactly one of MAIL_OAUTH_CLIENT_SECRET and "
                    "MAIL_OAUTH_CERTIFICATE_FILE"
                )
            elif self.oauth_certificate_file is not None:
                problems += certificate_problems(self.oauth_certificate_file)
        elif provider == "google" and self.oauth_service_account_file is not None:
            if self.oauth_refresh_token.get_secret_value():
                problems.append("set MAIL_OAUTH_SERVICE_ACCOUNT_FILE or MAIL_OAUTH_REFRESH_TOKEN, not both")
            problems += service_account_problems(self.oauth_service_account_file)
        elif provider == "google":
            required = [
                ("MAIL_OAUTH_CLIENT_ID", self.oauth_client_id),
                ("MAIL_OAUTH_CLIENT_SECRET", has_secret),
                ("MAIL_OAUTH_REFRESH_TOKEN", self.oauth_refresh_token.get_secret_value()),
            ]
        else:
            required = [
                ("MAIL_OAUTH_TOKEN_URL", self.oauth_token_url),
                ("MAIL_OAUTH_CLIENT_ID", self.oauth_client_id),
                ("MAIL_OAUTH_CLIENT_SECRET", has_secret),
            ]
        absent = [name for name, value in required if not value]
        if absent and provider == "generic":
            problems.append(
                f"MAIL_AUTH=xoauth2 needs {' and '.join(absent)} (the client-credentials token source of any "
                "OAuth2 provider; MAIL_OAUTH_PROVIDER=microsoft or google for a tenant URL, a certificate, a "
                "service account or a refresh token)"
            )
        elif absent:
            alternative = (
                " (or MAIL_OAUTH_SERVICE_ACCOUNT_FILE, a service account key)" if provider == "google" else ""
            )
            problems.append(
                f"{' and '.join(absent)} must be set when MAIL_OAUTH_PROVIDER={provider}{alternative}"
            )
        return problems or token_url_problems(self.oauth_token_endpoint)

    def secret_forms(self) -> tuple[str, ...]:
        """The password plain, base64 (AUTH LOGIN) and as the AUTH PLAIN blob; the OAuth2 client secret and refresh token."""
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
        return (*super().secret_forms(), *forms)

    @property
    def oauth_token_endpoint(self) -> str:
        """The token URL: MAIL_OAUTH_TOKEN_URL, else the provider's (a service account's own `token_uri`)."""
        if self.oauth_token_url:
            return self.oauth_token_url
        if self.oauth_service_account_file is not None:
            return str(service_account_key(self.oauth_service_account_file).get("token_uri", ""))
        provider = OAUTH_PROVIDERS.get(self.oauth_provider or "")
        return provider.token_url.format(tenant=self.oauth_tenant_id) if provider else ""

    @property
    def oauth_scopes(self) -> str:
        """MAIL_OAUTH_SCOPE, else the provider's scope for SMTP."""
        provider = OAUTH_PROVIDERS.get(self.oauth_provider or "")
        return self.oauth_scope or (provider.scope if provider else "")
