"""Who a notification may go to: no recipient twice, and only the allowed domains (open relay risk)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError

from ..notifications import NotificationContent
from ..settings import ApiSettings

logger = logging.getLogger(__name__)


def check_recipients(content: NotificationContent, limits: ApiSettings) -> None:
    """Reject, as a 422, duplicate recipients (case-insensitive, across to and cc) and
    recipients outside ALLOWED_RECIPIENT_DOMAINS; each refusal is logged, never the body."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for field in ("to", "cc"):
        for index, address in enumerate(getattr(content, field)):
            location = ("body", field, index)
            if address.lower() in seen:
                errors.append(
                    {"type": "duplicate_recipient", "loc": location, "msg": "recipient listed twice"}
                )
            seen.add(address.lower())
            domain = address.rsplit("@", 1)[1].lower().rstrip(".")
            if not domain_allowed(domain, limits.allowed_recipient_domains):
                errors.append(
                    {
                        "type": "recipient_domain_not_allowed",
                        "loc": location,
                        "msg": f"domain {domain} is not in ALLOWED_RECIPIENT_DOMAINS",
                    }
                )
    if errors:
        logger.warning(
            "notification refused: %s",
            "; ".join(f"{error['loc'][1]}[{error['loc'][2]}] {error['msg']}" for error in errors),
        )
        raise RequestValidationError(errors)


def domain_allowed(domain: str, allowed: tuple[str, ...]) -> bool:
    """Whether `domain` is one of `allowed` or a subdomain of one; an empty `allowed` allows all."""
    return not allowed or any(domain == entry or domain.endswith(f".{entry}") for entry in allowed)
