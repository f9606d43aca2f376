"""OAuth2 bearer tokens for `AUTH XOAUTH2`, fetched with authlib and shared by every SMTP session.

`TokenCache` holds one token for a `Mailer`: every pooled session that logs in uses it; it is
fetched again only shortly before it expires (one request in flight at a time), or once when
the SMTP server refuses it. Each token request is bounded by MAIL_TIMEOUT. An endpoint that is
down, slow or failing (5xx) raises `TokenUnavailableError` (transient); a refused client, consent or
grant raises `TokenRefusedError` (permanent). Both carry a one-line `reason` and `fix`, never a secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncAssertionClient, AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import MailError, PermanentMailError, TransientMailError, redact
from .settings import MailSettings, service_account_key

if TYPE_CHECKING:  # events.py imports this module
    from .events import MailEvents

__all__ = [
    "AccessToken",
    "TokenCache",
    "TokenFailure",
    "TokenRefusedError",
    "TokenUnavailableError",
    "fetch_token",
]

REFRESH_MARGIN = 60.0
"""Seconds before expiry a token is renewed; at most a quarter of its lifetime."""

DEFAULT_LIFETIME = 3600.0
"""Seconds a token is taken to live when the endpoint does not say (no `expires_in`)."""

CONSENT_ERRORS = frozenset({"unauthorized_client", "invalid_scope", "access_denied", "consent_required"})
MICROSOFT_SMTP_ROLE = "SMTP.SendAsApp"


class TokenFailure(StrEnum):
    """Why no token was issued (or used); the values are check-mail's problem classes."""

    UNREACHABLE = "oauth_endpoint_unreachable"  # the endpoint is down, slow or failing
    CLIENT = "oauth_client_invalid"  # unknown client, wrong secret, certificate or key
    CONSENT = "oauth_consent_missing"  # the app lacks the permission or delegation for the scope or mailbox
    GRANT = "oauth_grant_invalid"  # refresh token revoked or expired, subject not allowed
    REFUSED = "oauth_token_refused"  # the endpoint issued a token but the SMTP server refused it


class TokenError(MailError):
    """A token could not be obtained or was refused; `reason` and `fix` are one line each."""

    def __init__(self, reason: str, fix: str, failure: TokenFailure) -> None:
        super().__init__(f"{reason}: {fix}")
        self.reason, self.fix, self.failure = reason, fix, failure


class TokenUnavailableError(TokenError, TransientMailError):
    """The token endpoint did not answer in time, could not be reached, or failed (5xx)."""


class TokenRefusedError(TokenError, PermanentMailError):
    """The token endpoint refused the client or grant, or the SMTP server refused the token."""


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and the `time.monotonic()` after which it is renewed."""

    value: str = field(repr=False)
    renew_at: float

    @property
    def fresh(self) -> bool:
        """True until shortly before the token expires."""
        return time.monotonic() < self.renew_at


class TokenCache:
    """One token shared by every session of a mailer, renewed shortly before it expires.

    Concurrent callers wait for the single request in flight instead of making their own, and
    share its outcome: when it fails, they fail with it rather than each asking again.
    `requests` counts the token requests made; `events` hears of each (`MailEvents.token_refreshed`).
    """

    def __init__(self, settings: MailSettings, events: MailEvents | None = None) -> None:
        self._settings = settings
        self._events = events
        self._token: AccessToken | None = None
        self._failure: TokenError | None = None
        self._finished = 0  # token requests that have ended, either way
        self._lock = asyncio.Lock()
        self.requests = 0

    async def get(self) -> str:
        """A token that is not about to expire."""
        token = self._token
        if token is not None and token.fresh:
            return token.value
        return await self._fetch_once(lambda token: token is not None and token.fresh)

    async def renew(self, refused: str) -> str:
        """A token other than `refused`, which the SMTP server did not accept."""
        return await self._fetch_once(lambda token: token is not None and token.value != refused)

    async def _fetch_once(self, usable: Callable[[AccessToken | None], bool]) -> str:
        """The cached token if `usable`, else a new one; a request that failed while we waited is ours too."""
        finished_before = self._finished
        async with self._lock:
            if self._token is not None and usable(self._token):
                return self._token.value
            failure = self._failure
            if failure is not None and self._finished != finished_before:
                raise type(failure)(failure.reason, failure.fix, failure.failure)
            self.requests += 1
            try:
                self._token = await fetch_token(self._settings)
            except TokenError as error:
                self._failure = error
                self._report(ok=False)
                raise
            else:
                self._failure = None
                self._report(ok=True)
            finally:
                self._finished += 1
            return self._token.value

    def _report(self, *, ok: bool) -> None:
        if self._events is not None:
            self._events.token_refreshed(ok)


async def xoauth2_login(smtp: aiosmtplib.SMTP, settings: MailSettings, tokens: TokenCache) -> None:
    """`AUTH XOAUTH2` as MAIL_USERNAME; a refused token is renewed once before the refusal counts."""
    token = await tokens.get()
    try:
        await smtp.auth_xoauth2(settings.username, token)
        return
    except aiosmtplib.SMTPAuthenticationError as error:
        if error.code != 535:
            raise
    token = await tokens.renew(token)
    try:
        await smtp.auth_xoauth2(settings.username, token)
    except aiosmtplib.SMTPAuthenticationError as error:
        if error.code != 535:
            raise
        refusal = smtp_refusal(settings, f"{error.code} {error.message}", token)
        where = f"{settings.server}:{settings.port}"
        message = redact(f"login to {where} failed: {refusal.reason}", (*settings.secret_forms(), token))
        raise TokenRefusedError(message, refusal.fix, refusal.failure) from None


async def fetch_token(settings: MailSettings) -> AccessToken:
    """A new access token from the configured source, within MAIL_TIMEOUT seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.timeout):
            token = await _request(settings)
    except TimeoutError:
        raise token_timeout(settings) from None
    except httpx.HTTPStatusError as error:
        raise _unavailable(settings, f"answered HTTP {error.response.status_code}") from None
    except httpx.TransportError as error:
        raise _unavailable(settings, f"cannot be reached ({_transport_reason(error)})") from None
    except OAuthError as error:
        raise _refused(settings, str(error.error or ""), str(error.description or "")) from None
    except ValueError:  # not JSON
        raise _refused(settings, "", "its answer is not a JSON token response") from None
    value = token.get("access_token")
    if not isinstance(value, str) or not value:
        raise _refused(settings, "", "its answer has no access_token")
    lifetime = _lifetime(token)
    return AccessToken(value, started + lifetime - min(REFRESH_MARGIN, lifetime / 4))


def token_timeout(settings: MailSettings) -> TokenUnavailableError:
    """The error for a token endpoint that did not answer within MAIL_TIMEOUT."""
    return _unavailable(settings, f"did not answer within {settings.timeout:g} s")


@dataclass(frozen=True)
class Refusal:
    """Why the SMTP server refused a token the endpoint issued, and what to change."""

    reason: str
    fix: str
    failure: TokenFailure


def smtp_refusal(settings: MailSettings, reply: str, token: str) -> Refusal:
    """Diagnose a `535` to `AUTH XOAUTH2` with a token the endpoint issued."""
    reason = f"the server refused the OAuth2 token for MAIL_USERNAME={settings.username}: {reply}"
    if settings.oauth_provider == "microsoft":
        roles = _jwt_claims(token).get("roles")
        if isinstance(roles, list) and MICROSOFT_SMTP_ROLE not in roles:
            return Refusal(
                f"{reason} (the token has no {MICROSOFT_SMTP_ROLE} role)",
                "Entra admin center > App registrations > your app > API permissions: add Office 365 "
                f"Exchange Online > Application permissions > {MICROSOFT_SMTP_ROLE}, then Grant admin consent",
                TokenFailure.CONSENT,
            )
        return Refusal(
            reason,
            "in Exchange Online PowerShell register the app's service principal and give it the mailbox "
            "(New-ServicePrincipal -AppId <client id> -ObjectId <enterprise app object id>; "
            "Add-MailboxPermission -Identity <MAIL_USERNAME> -User <service principal id> -AccessRights FullAccess), "
            "and enable SMTP AUTH for the mailbox (Set-CASMailbox <MAIL_USERNAME> -SmtpClientAuthenticationDisabled $false)",
            TokenFailure.REFUSED,
        )
    if settings.oauth_provider == "google":
        return Refusal(
            reason,
            "MAIL_USERNAME must be the mailbox the token is for (a service account's delegated user, or the "
            "account that authorized the refresh token) and the scope must be https://mail.google.com/",
            TokenFailure.REFUSED,
        )
    return Refusal(
        reason,
        "check that the token's user is MAIL_USERNAME and that MAIL_OAUTH_SCOPE grants SMTP access",
        TokenFailure.REFUSED,
    )


# -- the token requests ----------------------------------------------------------------------------


async def _request(settings: MailSettings) -> dict[str, Any]:
    """The token endpoint's answer (authlib raises `OAuthError` for an error answer)."""
    endpoint = settings.oauth_token_endpoint
    http: dict[str, Any] = {"timeout": settings.timeout, "verify": settings.tls_context}
    secret = settings.oauth_client_secret.get_secret_value()
    scope = settings.oauth_scopes or None
    if settings.oauth_service_account_file is not None:
        key = service_account_key(settings.oauth_service_account_file)
        header = {"alg": "RS256", "kid": str(key.get("private_key_id", ""))}
        async with AsyncAssertionClient(
            token_endpoint=endpoint,
            issuer=key["client_email"],
            subject=settings.username,
            audience=key["token_uri"],
            claims={"scope": scope},
            key=key["private_key"],
            header=header,
            **http,
        ) as assertion_client:
            return dict(await assertion_client.refresh_token())
    if settings.oauth_refresh_token.get_secret_value():
        async with AsyncOAuth2Client(
            settings.oauth_client_id,
            secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
            **http,
        ) as client:
            return dict(
                await client.refresh_token(
                    endpoint, refresh_token=settings.oauth_refresh_token.get_secret_value()
                )
            )
    if settings.oauth_certificate_file is not None:
        pem = settings.oauth_certificate_file.read_bytes()
        thumbprint = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition
        x5t = base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()
        async with AsyncOAuth2Client(
            settings.oauth_client_id,
            pem.decode(),
            scope=scope,
            token_endpoint_auth_method="private_key_jwt",  # noqa: S106 - a method name
            **http,
        ) as client:
            client.register_client_auth_method(PrivateKeyJWT(endpoint, headers={"x5t": x5t}))
            return dict(await client.fetch_token(endpoint, grant_type="client_credentials"))
    method = "client_secret_post" if settings.oauth_provider == "microsoft" else "client_secret_basic"
    async with AsyncOAuth2Client(
        settings.oauth_client_id, secret, scope=scope, token_endpoint_auth_method=method, **http
    ) as client:
        return dict(await client.fetch_token(endpoint, grant_type="client_credentials"))


def _lifetime(token: dict[str, Any]) -> float:
    try:
        return max(float(token.get("expires_in", DEFAULT_LIFETIME)), 1.0)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME


def _host(settings: MailSettings) -> str:
    return urlsplit(settings.oauth_token_endpoint).netloc


def _unavailable(settings: MailSettings, what: str) -> TokenUnavailableError:
    return TokenUnavailableError(
        f"the OAuth2 token endpoint {_host(settings)} {what}",
        "check MAIL_OAUTH_TOKEN_URL (or the tenant) and that this machine reaches it (proxy, firewall); "
        "a failing identity provider is retried later",
        TokenFailure.UNREACHABLE,
    )


def _refused(settings: MailSettings, code: str, description: str) -> TokenRefusedError:
    if code == "invalid_client":
        failure = TokenFailure.CLIENT
    elif code in CONSENT_ERRORS or "AADSTS65001" in description:
        failure = TokenFailure.CONSENT
    elif code == "invalid_grant":
        failure = TokenFailure.GRANT
    else:
        failure = TokenFailure.CLIENT
    said = " ".join(f"{code} {description}".split())[:200]
    reason = redact(
        f"the OAuth2 token endpoint {_host(settings)} refused to issue a token: {said}",
        settings.secret_forms(),
    )
    return TokenRefusedError(reason, _advice(settings, failure), failure)


def _advice(settings: MailSettings, failure: TokenFailure) -> str:
    """What to change for a token request refused with `failure`, for the configured source."""
    provider = settings.oauth_provider
    service_account = settings.oauth_service_account_file is not None
    refresh = bool(settings.oauth_refresh_token.get_secret_value())
    if failure is TokenFailure.CLIENT:
        if provider == "microsoft":
            credential = (
                "MAIL_OAUTH_CERTIFICATE_FILE (the certificate uploaded under Certificates & secrets)"
                if settings.oauth_certificate_file is not None
                else "MAIL_OAUTH_CLIENT_SECRET (the secret's Value, not its ID; it may have expired)"
            )
            return (
                f"check MAIL_OAUTH_TENANT_ID, MAIL_OAUTH_CLIENT_ID (Application (client) ID) and {credential}"
            )
        if service_account:
            return "the key was deleted or disabled: create a key (IAM > Service accounts > Keys) for MAIL_OAUTH_SERVICE_ACCOUNT_FILE"
        return "check MAIL_OAUTH_CLIENT_ID and MAIL_OAUTH_CLIENT_SECRET"
    if failure is TokenFailure.CONSENT:
        if provider == "microsoft":
            return (
                "grant admin consent for the app (API permissions > Office 365 Exchange Online > "
                f"{MICROSOFT_SMTP_ROLE}) and keep MAIL_OAUTH_SCOPE=https://outlook.office365.com/.default"
            )
        if service_account:
            return (
                "authorize domain-wide delegation for the service account's client id with scope "
                "https://mail.google.com/ (Admin console > Security > API controls > Domain-wide delegation)"
            )
        if refresh:
            return "authorize again with the scope https://mail.google.com/ and set MAIL_OAUTH_REFRESH_TOKEN"
        return "check MAIL_OAUTH_SCOPE and the client's permissions at the provider"
    if service_account:
        return "MAIL_USERNAME must be a mailbox of the Workspace domain that delegated to the service account"
    if refresh:
        return (
            "the refresh token was revoked or expired (a Testing-mode app's tokens last 7 days): "
            "authorize again and set MAIL_OAUTH_REFRESH_TOKEN"
        )
    return "check that the client may use the client-credentials grant (and MAIL_OAUTH_TENANT_ID)"


def _transport_reason(error: httpx.TransportError) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    return type(error).__name__


def _jwt_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT access token, {} for an opaque token; only to diagnose."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}
