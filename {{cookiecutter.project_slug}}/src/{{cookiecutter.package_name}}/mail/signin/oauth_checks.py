"""Checks of the OAuth2 credentials' files and endpoint, run when MAIL_AUTH=xoauth2 loads (never quoting a key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.settings import is_loopback

__all__ = ["certificate_problems", "service_account_key", "service_account_problems", "token_url_problems"]


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
    """Why `path` is not a usable service account key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

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
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

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
