"""Diagnoses of the login step: no login offered, login only after TLS, a refused password, OAuth2 wanted."""

from __future__ import annotations

import aiosmtplib

from ..core.errors import redact, wants_oauth
from ..signin.settings import SigninSettings
from .advice import login_advice
from .diagnosis import Found, Problem

__all__ = ["auth_requires_tls", "login_not_offered", "login_refused", "shown_username"]


def shown_username(settings: SigninSettings) -> str:
    """MAIL_USERNAME as shown: not at all when it is the password too."""
    if redact(settings.username, settings.secret_forms()) != settings.username:
        return "(not shown: it contains MAIL_PASSWORD)"
    return settings.username


def auth_requires_tls(settings: SigninSettings) -> Found:
    return Found(
        Problem.AUTH_REQUIRES_TLS,
        f"{settings.where} offers login only after TLS, but the connection is not encrypted",
        "set MAIL_STARTTLS=true (or MAIL_SSL_TLS=true on an implicit-TLS port)",
    )


def login_not_offered(smtp: aiosmtplib.SMTP, settings: SigninSettings) -> Found:
    """The session is up but offers no login method this package can use."""
    offered = " ".join(method.upper() for method in smtp.server_auth_methods)
    if not offered:
        if not settings.encrypted and smtp.supports_extension("starttls"):
            return auth_requires_tls(settings)
        return Found(
            Problem.AUTH_NOT_OFFERED,
            f"{settings.where} does not offer login (AUTH) on this port",
            "use the submission port that accepts logins (587 or 465), "
            "or MAIL_USE_CREDENTIALS=false if this server relays without login",
        )
    if settings.auth == "xoauth2":
        return Found(
            Problem.AUTH_NOT_OFFERED,
            f"{settings.where} offers only login mechanisms {offered}, not XOAUTH2",
            "use the provider's SMTP host (smtp.office365.com, smtp.gmail.com), or MAIL_AUTH=password",
        )
    supported = ", ".join(aiosmtplib.SMTP.AUTH_METHODS).upper()
    return Found(
        Problem.AUTH_NOT_OFFERED,
        f"{settings.where} offers only login mechanisms {offered}, none of {supported}",
        "use a server or port that accepts password logins, "
        "or MAIL_USE_CREDENTIALS=false if this server relays without login",
    )


def login_refused(code: int, reply: str, settings: SigninSettings) -> Found | None:
    """The diagnosis of a refused AUTH (`reply` already made safe to show), or None for an unexpected reply."""
    if code in (530, 538):
        return auth_requires_tls(settings)
    if code in (534, 535, 550) and wants_oauth(reply):
        return Found(
            Problem.OAUTH_REQUIRED,
            f"{settings.where} refused the password login because it wants OAuth2: {reply}",
            "set MAIL_AUTH=xoauth2 and the MAIL_OAUTH_* variables (README: Signing in with OAuth2)",
        )
    if code in (534, 535) and settings.auth == "password":
        return Found(
            Problem.AUTH_FAILED,
            f"{settings.where} rejected the login of MAIL_USERNAME={shown_username(settings)}: {reply}",
            login_advice(settings.server, settings.username),
        )
    return None
