"""What to change when an OAuth2 token is not issued, or issued and refused: one line each, per provider."""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..core.errors import redact
from .settings import SigninSettings
from .tokens import TokenEndpointUntrustedError, TokenFailure, TokenRefusedError, TokenUnavailableError

__all__ = ["Refusal", "refused", "smtp_refusal", "unavailable", "untrusted"]

CONSENT_ERRORS = frozenset({"unauthorized_client", "invalid_scope", "access_denied", "consent_required"})
MICROSOFT_SMTP_ROLE = "SMTP.SendAsApp"


@dataclass(frozen=True)
class Refusal:
    """Why the SMTP server refused a token the endpoint issued, and what to change."""

    reason: str
    fix: str
    failure: TokenFailure


def smtp_refusal(settings: SigninSettings, reply: str, token: str) -> Refusal:
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


def _host(settings: SigninSettings) -> str:
    return urlsplit(settings.oauth_token_endpoint).netloc


def unavailable(settings: SigninSettings, what: str) -> TokenUnavailableError:
    return TokenUnavailableError(
        f"the OAuth2 token endpoint {_host(settings)} {what}",
        "check MAIL_OAUTH_TOKEN_URL (or the tenant) and that this machine reaches it (proxy, firewall); "
        "a failing identity provider is retried later",
        TokenFailure.UNREACHABLE,
    )


def untrusted(settings: SigninSettings, error: ssl.SSLCertVerificationError) -> TokenEndpointUntrustedError:
    """The error for a token endpoint whose certificate does not verify: the secret was not sent."""
    reason = error.verify_message or error.reason or "verification failed"
    return TokenEndpointUntrustedError(
        f"the certificate of the OAuth2 token endpoint {_host(settings)} is not trusted ({reason}), "
        "so no credential was sent to it",
        "if the endpoint uses a private CA, add that CA's certificate (PEM) to the file MAIL_CERT_BUNDLE names; "
        "check the host of MAIL_OAUTH_TOKEN_URL (MAIL_VALIDATE_CERTS=false is for the SMTP server only: the "
        "token endpoint is always verified)",
        TokenFailure.UNTRUSTED,
    )


def refused(settings: SigninSettings, code: str, description: str) -> TokenRefusedError:
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


def _advice(settings: SigninSettings, failure: TokenFailure) -> str:
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
