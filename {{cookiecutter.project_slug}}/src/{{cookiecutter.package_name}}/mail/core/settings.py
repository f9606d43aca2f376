"""The core's settings: where the SMTP server is, how TLS is done, who sends, how hard to try.

`SmtpSettings` is the base every feature's settings extend (sign-in, signing, the doctor); the
package's `MailSettings` combines them. Each class adds its own checks by extending `problems()`
(and `warnings()`), so one validation reports every bad variable at once. Every rule that
fastapi-mail would only discover at send time (both TLS modes at once, a port that does not match
the TLS mode) is checked here, when the settings load.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import ssl
import stat
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import EmailStr, Field, FilePath, model_validator
from pydantic_settings import SettingsConfigDict

from .headers import HeaderText
from .loading import EnvSettings

__all__ = ["IMPLICIT_TLS_PORTS", "STARTTLS_PORTS", "SmtpSettings", "is_loopback", "key_file_warning"]

STARTTLS_PORTS = frozenset({587, 2587})
IMPLICIT_TLS_PORTS = frozenset({465, 2465})
MISMATCH_ESCAPE = "(MAIL_ALLOW_PORT_MISMATCH=true if your server really does this)"


class SmtpSettings(EnvSettings):
    """The SMTP server, TLS, the sender, timeouts, the session pool and retries (`MAIL_*` variables).

    Read from the environment and `.env` in the working directory; another file with
    `SmtpSettings(_env_file="path/.env")` (or any subclass, e.g. `MailSettings`).
    """

    model_config = SettingsConfigDict(
        env_prefix="MAIL_",
        hide_input_in_errors=True,  # a ValidationError's text must not carry MAIL_PASSWORD
    )

    # -- the server and TLS --
    server: str = Field(min_length=1, description="SMTP host name or IP address.")
    port: int = Field(
        ge=1, le=65535, description="SMTP port: usually 587 for STARTTLS, 465 for implicit TLS."
    )
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS (port 587).")
    ssl_tls: bool = Field(default=False, description="Connect with implicit TLS (port 465).")
    validate_certs: bool = Field(default=True, description="Verify the server certificate and host name.")
    cert_bundle: FilePath | None = Field(
        default=None, description="PEM file of extra CA certificates to trust, besides the system ones."
    )
    allow_port_mismatch: bool = Field(
        default=False,
        description="Accept a port that does not match the TLS mode (465 with STARTTLS, 587 with implicit TLS).",
    )
    # -- the sender --
    from_address: EmailStr = Field(
        validation_alias="MAIL_FROM", description="Sender address (the From header and the envelope)."
    )
    from_name: HeaderText = Field(default="", description="Sender display name.")
    # -- timeouts, the pool, retries --
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds allowed for each SMTP step.")
    data_timeout: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="Seconds to wait for the reply to the end of a message (RFC 5321 4.5.3.2: 10 minutes).",
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

    @model_validator(mode="before")
    @classmethod
    def _from_address_by_name(cls, data: Any) -> Any:
        """`from_address=` as a keyword as well as MAIL_FROM (only MAIL_FROM in the environment)."""
        if isinstance(data, dict) and "from_address" in data:
            return {**data, "MAIL_FROM": data["from_address"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> SmtpSettings:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Each reason these settings cannot work, naming the variables to change; subclasses add theirs."""
        if self.starttls and self.ssl_tls:
            return [
                "MAIL_STARTTLS and MAIL_SSL_TLS are both true: set exactly one "
                "(MAIL_STARTTLS=true for port 587, MAIL_SSL_TLS=true for port 465)"
            ]
        problems = [] if self.cert_bundle is None else self._cert_bundle_problems()
        if self.allow_port_mismatch:
            return problems
        if self.starttls and self.port in IMPLICIT_TLS_PORTS:
            problems.append(
                f"MAIL_PORT={self.port} is an implicit-TLS port but MAIL_STARTTLS=true: use MAIL_PORT=587, "
                f"or MAIL_SSL_TLS=true with MAIL_STARTTLS=false {MISMATCH_ESCAPE}"
            )
        if self.ssl_tls and self.port in STARTTLS_PORTS:
            problems.append(
                f"MAIL_PORT={self.port} is a STARTTLS port but MAIL_SSL_TLS=true: use MAIL_PORT=465, "
                f"or MAIL_STARTTLS=true with MAIL_SSL_TLS=false {MISMATCH_ESCAPE}"
            )
        return problems

    def warnings(self) -> list[str]:
        """Settings that work but are unsafe, one line each (logged at start-up, printed by check-mail)."""
        if self.encrypted and not self.validate_certs:
            return [
                "MAIL_VALIDATE_CERTS=false: the server certificate is not verified, so anyone on the network "
                "path can pose as the server and read the mail and the password; set MAIL_CERT_BUNDLE to the "
                "CA file of a private server instead"
            ]
        return []

    def secret_forms(self) -> tuple[str, ...]:
        """Secrets as they may appear in text (subclasses add theirs); every error and diagnosis hides each."""
        return ()

    @property
    def encrypted(self) -> bool:
        """True when the session is protected by TLS (implicit or STARTTLS)."""
        return self.starttls or self.ssl_tls

    @property
    def where(self) -> str:
        """`host:port`, as error messages name the server."""
        return f"{self.server}:{self.port}"

    @cached_property
    def trust_store(self) -> ssl.SSLContext:
        """A verifying TLS context: the system CAs plus MAIL_CERT_BUNDLE, whatever MAIL_VALIDATE_CERTS says
        (for other servers this package talks to, such as an OAuth2 token endpoint)."""
        context = ssl.create_default_context()
        if self.cert_bundle is not None:
            context.load_verify_locations(cafile=str(self.cert_bundle))
        return context

    @cached_property
    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of every SMTP connection: `trust_store`, unverified if MAIL_VALIDATE_CERTS=false."""
        if self.validate_certs:
            return self.trust_store
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _cert_bundle_problems(self) -> list[str]:
        """Load MAIL_CERT_BUNDLE now, so a bad file stops start-up, not every send."""
        try:
            self.trust_store  # noqa: B018 - built and cached
        except (ssl.SSLError, OSError) as error:
            reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
            return [
                f"MAIL_CERT_BUNDLE={self.cert_bundle} is not a PEM file of CA certificates ({reason}): "
                "point it at the CA certificate(s) that signed the server's, in PEM form (-----BEGIN CERTIFICATE-----)"
            ]
        return []


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x from a dual-stack socket),
    where clear text never leaves the machine."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def key_file_warning(variable: str, path: Path) -> str | None:
    """A warning when the private-key file `path` (set by `variable`) can be read by its group or other users."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:  # a file that cannot be read is a problem of its own, reported where it is loaded
        return None
    if os.name != "posix" or not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    who = "other users of this machine" if mode & stat.S_IROTH else "its group"
    return (
        f"{variable}={path} holds a private key and can be read by {who} (mode {mode:04o}): "
        f"chmod 600 {shlex.quote(str(path))}"
    )
