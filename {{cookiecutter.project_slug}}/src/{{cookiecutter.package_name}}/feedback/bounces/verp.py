"""VERP: the envelope sender `bounces+<notification id>@<BOUNCE_DOMAIN>` carries the id to the bounce.

A receiving server returns a bounce to the envelope sender (MAIL FROM), so the address a bounce
arrives at names the notification it is about, whatever the bounce's format. The bounce domain's
mail server must deliver `bounces+anything@` to the `bounces@` mailbox (plus addressing).
"""

from __future__ import annotations

import re
from email.utils import parseaddr

__all__ = ["LOCAL_PART", "notification_id_from", "verp_address"]

LOCAL_PART = "bounces"
NOTIFICATION_ID = re.compile(r"[0-9a-f]{32}")
VERP = re.compile(LOCAL_PART + r"\+(?P<id>[0-9a-f]{32})@(?P<domain>[^@\s]+)", re.IGNORECASE)


def verp_address(notification_id: str, bounce_domain: str) -> str:
    """The envelope sender for `notification_id` (32 lowercase hex characters) on `bounce_domain`."""
    if not NOTIFICATION_ID.fullmatch(notification_id):
        raise ValueError("a notification id is 32 lowercase hexadecimal characters")
    if not bounce_domain or "@" in bounce_domain or any(char.isspace() for char in bounce_domain):
        raise ValueError("the bounce domain is a bare domain such as bounce.example.com")
    return f"{LOCAL_PART}+{notification_id}@{bounce_domain}"


def notification_id_from(address: str, bounce_domain: str) -> str | None:
    """The notification id in a VERP `address` on `bounce_domain` (`<...>` and a display name allowed), else None.

    Local parts and domains may come back in another case (some servers fold them); the id is
    returned in lowercase, as the service made it. Anything but exactly 32 hex digits is refused.
    """
    found = VERP.fullmatch(parseaddr(address)[1])
    if found is None or found["domain"].lower().rstrip(".") != bounce_domain.lower().rstrip("."):
        return None
    return found["id"].lower()
