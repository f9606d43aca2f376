"""Who is calling: a bearer key names its client (compared in constant time), and wrong keys are
throttled per client address, so keys cannot be guessed at the speed of the server."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections import OrderedDict

from fastapi.security.utils import get_authorization_scheme_param

from ..settings import ApiSettings

logger = logging.getLogger(__name__)

MAX_TRACKED_ADDRESSES = 10_000
"""Client addresses with failures remembered at most (a few MB); beyond, the oldest windows are forgotten."""
THROTTLED_MESSAGE = (
    "too many failed authentications from this address (API_AUTH_FAILURES within API_AUTH_WINDOW); "
    "try again after Retry-After seconds"
)


class ThrottledError(Exception):
    """Too many failed authentications from an address: its requests are refused, their key unchecked."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"throttled for {retry_after} s")
        self.retry_after = retry_after


class FailureThrottle:
    """Failed authentications per client address, in fixed windows of `window` seconds from the first:
    after `limit` failures the address is refused until its window ends.

    An IPv6 address counts as its /64 (one subscriber's prefix). At most `max_addresses` are remembered,
    the oldest window forgotten first; windows start in order, so the oldest one is the first in the dict.
    """

    def __init__(self, limit: int, window: float, max_addresses: int = MAX_TRACKED_ADDRESSES) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Address -> (end of its window, failures in it)."""

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until `address` may authenticate again, or None if it may now."""
        now = time.monotonic()
        self._forget_ended(now)
        end, failures = self._failures.get(address_key(address), (now, 0))
        return max(1, math.ceil(end - now)) if failures >= self.limit else None

    def failed(self, address: str) -> None:
        """Count a failed authentication from `address`."""
        now = time.monotonic()
        self._forget_ended(now)
        key = address_key(address)
        end, failures = self._failures.get(key, (now + self.window, 0))
        self._failures[key] = (end, failures + 1)  # an address already there keeps its place
        if failures + 1 == self.limit:
            logger.warning(
                "%d failed authentications from %s: refused for %d s (API_AUTH_FAILURES, API_AUTH_WINDOW)",
                self.limit,
                key,
                math.ceil(end - now),
            )
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def _forget_ended(self, now: float) -> None:
        while self._failures and next(iter(self._failures.values()))[0] <= now:
            self._failures.popitem(last=False)


def address_key(address: str) -> str:
    """What the throttle counts `address` as: itself, or for IPv6 its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return address


class Authenticator:
    """API_KEYS as SHA-256 digests, each with its client, and the throttle of failed authentications."""

    def __init__(self, settings: ApiSettings) -> None:
        self._keys = [(_digest(key.secret.get_secret_value()), key.client) for key in settings.api_keys]
        self.throttle = FailureThrottle(settings.api_auth_failures, settings.api_auth_window)

    def client_of(self, presented: str) -> str | None:
        """The client whose key `presented` is, or None.

        Digests are compared, with every key and each in constant time, so timing reveals neither
        which key matched, nor how much of one, nor the keys' lengths.
        """
        digest = _digest(presented)
        matches = [(hmac.compare_digest(digest, key), client) for key, client in self._keys]
        return next((client for matched, client in matches if matched), None)

    def authenticate(self, authorization: str | None, address: str) -> str | None:
        """The client named by an `Authorization: Bearer <key>` header, or None: no header, or a wrong one,
        which counts against `address`. Raises `ThrottledError`, looking at no key, while `address` has
        had too many failures."""
        retry_after = self.throttle.retry_after(address)
        if retry_after is not None:
            raise ThrottledError(retry_after)
        if not authorization:
            return None
        scheme, token = get_authorization_scheme_param(authorization)
        client = self.client_of(token) if scheme.lower() == "bearer" else None
        if client is None:
            self.throttle.failed(address)
        return client


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
