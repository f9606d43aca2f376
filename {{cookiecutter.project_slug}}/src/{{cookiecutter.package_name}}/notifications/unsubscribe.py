"""Signed, expiring unsubscribe tokens: the address and the notification, HMAC-SHA256 with MAIL_UNSUBSCRIBE_SECRET.

No database row is needed to check one, and nothing can be learnt or changed without the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["InvalidTokenError", "UnsubscribeToken", "UnsubscribeTokens"]


class InvalidTokenError(ValueError):
    """A token that is forged, damaged or expired; the message says which, never more."""


@dataclass(frozen=True)
class UnsubscribeToken:
    """What a valid token says: who unsubscribes, from which notification's mail."""

    address: str
    notification_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeTokens:
    """Issues and verifies tokens valid for `ttl` seconds."""

    def __init__(self, secret: SecretStr, ttl: int) -> None:
        self._key = hashlib.sha256(b"unsubscribe:" + secret.get_secret_value().encode()).digest()
        self._ttl = ttl

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, address: str, notification_id: str, now: float | None = None) -> str:
        """A token for `address`, expiring `ttl` seconds from `now`."""
        expires = int((time.time() if now is None else now) + self._ttl)
        claims = {"a": address, "n": notification_id, "e": expires}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, now: float | None = None) -> UnsubscribeToken:
        """What `token` says; raises `InvalidTokenError` when it is not one this service signed, or expired."""
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidTokenError("this unsubscribe link is not valid (damaged or not ours)")
        try:
            claims = json.loads(_unb64(payload))
            address, notification_id, expires = str(claims["a"]), str(claims["n"]), int(claims["e"])
        except (ValueError, KeyError, TypeError):
            raise InvalidTokenError("this unsubscribe link is not valid (damaged or not ours)") from None
        if expires < (time.time() if now is None else now):
            raise InvalidTokenError("this unsubscribe link has expired; use the one in a newer email")
        return UnsubscribeToken(address, notification_id)
