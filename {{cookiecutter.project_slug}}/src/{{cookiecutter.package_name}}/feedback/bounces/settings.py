"""Bounces for plain SMTP: the VERP domain and the mailbox bounces arrive in (`BOUNCE_*` variables)."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import unquote, urlsplit

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ...mail.core.loading import EnvSettings
from ...mail.core.settings import is_loopback

__all__ = ["BounceSettings", "ImapMailbox", "parse_imap_url"]

HOUR = 3600
DAY = 24 * HOUR
HOSTNAME = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
URL_FORM = "imaps://user@host:993/INBOX"


@dataclass(frozen=True)
class ImapMailbox:
    """Where BOUNCE_IMAP_URL points: a server, a user on it and one of the user's mailboxes (folders)."""

    host: str
    port: int
    user: str
    mailbox: str
    tls: bool  # False only for imap:// on a loopback host

    @property
    def where(self) -> str:
        """`host:port`, as messages name the server."""
        return f"{self.host}:{self.port}"


def parse_imap_url(url: str) -> ImapMailbox:
    """Read `imaps://user@host:993/INBOX`; ValueError says what is wrong, never quoting the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("imaps", "imap") or not parts.hostname:
        raise ValueError(f"write it as {URL_FORM}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("its port is not a number from 1 to 65535") from None
    if parts.password is not None:
        raise ValueError(
            "holds a password: put the password in BOUNCE_IMAP_PASSWORD and only the user in the URL"
        )
    if not parts.username:
        raise ValueError(f"names no user: {URL_FORM} (write an @ in the user name as %40)")
    if parts.query or parts.fragment:
        raise ValueError(f"has a ?query or #fragment, which mean nothing here: {URL_FORM}")
    tls = parts.scheme.lower() == "imaps"
    if not tls and not is_loopback(parts.hostname):
        raise ValueError(
            f"uses imap:// for {parts.hostname}, which would send BOUNCE_IMAP_PASSWORD and the bounces in clear "
            "text: use imaps:// (plain imap:// only for a loopback host)"
        )
    mailbox = unquote(parts.path.strip("/")) or "INBOX"
    if not mailbox.isascii() or not mailbox.isprintable():
        raise ValueError("its mailbox (the path) must be printable ASCII, such as /INBOX or /INBOX/Bounces")
    return ImapMailbox(
        host=parts.hostname,
        port=port or (993 if tls else 143),
        user=unquote(parts.username),
        mailbox=mailbox,
        tls=tls,
    )


class BounceSettings(EnvSettings):
    """The VERP bounce domain and the IMAP mailbox the bounces are read from (`BOUNCE_*` variables).

    Each part works alone: VERP without a mailbox (bounces read elsewhere), a mailbox without VERP
    (bounces matched by the returned Message-ID, as with providers that keep their own envelope sender).
    """

    # a ValidationError's text must not carry BOUNCE_IMAP_PASSWORD
    model_config = SettingsConfigDict(env_prefix="BOUNCE_", hide_input_in_errors=True)

    domain: str | None = Field(
        default=None,
        description=(
            "VERP domain: mail goes out with the envelope sender bounces+<notification id>@BOUNCE_DOMAIN, whose mail "
            "server delivers it to the BOUNCE_IMAP_URL mailbox. Empty: the envelope sender is MAIL_FROM."
        ),
    )
    imap_url: str | None = Field(
        default=None,
        description=(
            "Mailbox the bounces arrive in, read over TLS: imaps://user@host:993/INBOX (an @ in the user as %40; "
            "imap:// only on a loopback host). Empty: no mailbox is read."
        ),
    )
    imap_password: SecretStr | None = Field(
        default=None, description="Password of the BOUNCE_IMAP_URL user; never printed or logged."
    )
    imap_ca_bundle: FilePath | None = Field(
        default=None,
        description="PEM file of extra CA certificates to trust for the IMAP server, besides the system ones.",
    )
    imap_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds allowed for each IMAP command."
    )
    poll_interval: float = Field(
        default=60.0,
        gt=0,
        le=DAY,
        description="Seconds between looks at the mailbox while nothing new arrives; also the first wait after a failure.",
    )
    retry_backoff_max: float = Field(
        default=900.0,
        gt=0,
        le=DAY,
        description="Longest wait, in seconds, while the IMAP server keeps failing (the wait doubles with each failure).",
    )

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, domain: str | None) -> str | None:
        if domain is None:
            return None
        domain = domain.strip().lower().rstrip(".")
        if not HOSTNAME.fullmatch(domain):
            raise ValueError("write a bare domain such as bounce.example.com (no bounces+, no @)")
        return domain

    @field_validator("imap_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is not None:
            parse_imap_url(url)
        return url

    @model_validator(mode="after")
    def _check(self) -> BounceSettings:
        problems = []
        if self.imap_url is not None and self.imap_password is None:
            problems.append("BOUNCE_IMAP_PASSWORD is required when BOUNCE_IMAP_URL is set")
        if self.retry_backoff_max < self.poll_interval:
            problems.append("BOUNCE_RETRY_BACKOFF_MAX must be at least BOUNCE_POLL_INTERVAL")
        if self.imap_ca_bundle is not None:
            try:
                self.tls_context  # noqa: B018 - built and cached
            except (ssl.SSLError, OSError) as error:
                reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
                problems.append(
                    f"BOUNCE_IMAP_CA_BUNDLE={self.imap_ca_bundle} is not a PEM file of CA certificates ({reason}): "
                    "point it at the CA certificate(s) that signed the IMAP server's, in PEM form"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def mailbox(self) -> ImapMailbox | None:
        """The parsed BOUNCE_IMAP_URL, or None when no mailbox is read."""
        return None if self.imap_url is None else parse_imap_url(self.imap_url)

    @cached_property
    def tls_context(self) -> ssl.SSLContext:
        """Verifies the IMAP server's certificate and name: the system CAs plus BOUNCE_IMAP_CA_BUNDLE."""
        context = ssl.create_default_context()
        if self.imap_ca_bundle is not None:
            context.load_verify_locations(cafile=str(self.imap_ca_bundle))
        return context
