"""OAuth2 sign-in (MAIL_AUTH=xoauth2): tokens from the configured source with authlib, and `AUTH XOAUTH2`.

Imported only when MAIL_AUTH=xoauth2 (authlib is the `oauth` extra). Each token request is bounded
by MAIL_TIMEOUT and verifies the endpoint's certificate against the system CAs and MAIL_CERT_BUNDLE,
whatever MAIL_VALIDATE_CERTS says (that setting is about the SMTP server).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from typing import Any

import aiosmtplib
import httpx
from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]  # authlib ships no types
from authlib.integrations.httpx_client import AsyncAssertionClient, AsyncOAuth2Client  # type: ignore[import-untyped]
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..core.errors import redact
from ..core.events import MailEvents
from .oauth_advice import refused, smtp_refusal, unavailable, untrusted
from .oauth_checks import service_account_key
from .settings import SigninSettings
from .tokens import AccessToken, TokenCache, TokenRefusedError, TokenUnavailableError

__all__ = ["XOAuth2Login", "fetch_token", "token_timeout", "xoauth2_login"]

REFRESH_MARGIN = 60.0
"""Seconds before expiry a token is renewed; at most a quarter of its lifetime."""

DEFAULT_LIFETIME = 3600.0
"""Seconds a token is taken to live when the endpoint does not say (no `expires_in`)."""


class XOAuth2Login:
    """The `Login` of MAIL_AUTH=xoauth2: one `TokenCache` for every session of a mailer."""

    def __init__(self, settings: SigninSettings, events: MailEvents | None = None) -> None:
        self._settings = settings
        self.tokens = TokenCache(lambda: fetch_token(settings), events)

    def check(self) -> None:
        """Nothing to check before connecting: a failed token request is cached for its waiters only."""

    async def __call__(self, smtp: aiosmtplib.SMTP, action: str) -> None:
        if "xoauth2" not in smtp.server_auth_methods:
            raise aiosmtplib.SMTPException("the server does not offer AUTH XOAUTH2")
        await xoauth2_login(smtp, self._settings, self.tokens)


async def xoauth2_login(smtp: aiosmtplib.SMTP, settings: SigninSettings, tokens: TokenCache) -> None:
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


async def fetch_token(settings: SigninSettings) -> AccessToken:
    """A new access token from the configured source, within MAIL_TIMEOUT seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.timeout):
            token = await _request(settings)
    except TimeoutError:
        raise token_timeout(settings) from None
    except httpx.HTTPStatusError as error:
        raise unavailable(settings, f"answered HTTP {error.response.status_code}") from None
    except httpx.TransportError as error:
        certificate = _certificate_error(error)
        if certificate is not None:
            raise untrusted(settings, certificate) from None
        raise unavailable(settings, f"cannot be reached ({_transport_reason(error)})") from None
    except OAuthError as error:
        raise refused(settings, str(error.error or ""), str(error.description or "")) from None
    except ValueError:  # not JSON
        raise refused(settings, "", "its answer is not a JSON token response") from None
    value = token.get("access_token")
    if not isinstance(value, str) or not value:
        raise refused(settings, "", "its answer has no access_token")
    lifetime = _lifetime(token)
    return AccessToken(value, started + lifetime - min(REFRESH_MARGIN, lifetime / 4))


def token_timeout(settings: SigninSettings) -> TokenUnavailableError:
    """The error for a token endpoint that did not answer within MAIL_TIMEOUT."""
    return unavailable(settings, f"did not answer within {settings.timeout:g} s")


async def _request(settings: SigninSettings) -> dict[str, Any]:
    """The token endpoint's answer (authlib raises `OAuthError` for an error answer)."""
    endpoint = settings.oauth_token_endpoint
    http: dict[str, Any] = {"timeout": settings.timeout, "verify": settings.trust_store}
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


def _certificate_error(error: httpx.TransportError) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind `error`, if that is what it is."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    return cause


def _transport_reason(error: httpx.TransportError) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    return type(error).__name__
