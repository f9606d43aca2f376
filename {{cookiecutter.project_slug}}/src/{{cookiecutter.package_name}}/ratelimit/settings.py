"""MAIL_RATE_LIMIT, MAIL_RECIPIENT_RATE_LIMIT and API_RATE_LIMIT, and which limits are in force.

Each is written in the `limits` notation: an amount per period ("30/minute", "2000/day",
"14/second", "100/5 minutes"), several comma-separated ("30/minute,2000/day"), every one enforced.
An unset sending limit takes the documented default of MAIL_SERVER's provider (`mail/providers.py`),
when it has one; check-mail prints the limits in force and where each came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from pydantic import Field, field_validator

from ..mail.core.loading import EnvSettings
from ..mail.providers import provider_of

NOTATION_HINT = (
    "write an amount per period, e.g. 30/minute or 30/minute,2000/day "
    "(periods: second, minute, hour, day, month, year)"
)


class RateLimitSettings(EnvSettings):
    """How much may be sent, and asked of the API, per period: for every process of the service together."""

    mail_rate_limit: str | None = Field(
        default=None,
        description=(
            "Most messages sent per period, by every process together, e.g. 30/minute or 30/minute,2000/day; "
            "unset: the documented default of MAIL_SERVER's provider (check-mail prints it), else none."
        ),
    )
    mail_recipient_rate_limit: str | None = Field(
        default=None,
        description=(
            "Most recipients (to + cc of every message) per period, e.g. 10000/day; unset: the documented "
            "default of MAIL_SERVER's provider, else none. Each limit must allow MAX_RECIPIENTS."
        ),
    )
    api_rate_limit: str | None = Field(
        default=None,
        description=(
            "Most requests per period for each API key, by every process together, e.g. 600/minute; over it, "
            "429 with Retry-After (/health and /metrics are not limited). Unset: none."
        ),
    )

    @field_validator("mail_rate_limit", "mail_recipient_rate_limit", "api_rate_limit")
    @classmethod
    def _check_notation(cls, value: str | None) -> str | None:
        if value is not None:
            parse_limits(value)
        return value


def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """The limits written in `text`; ValueError saying how to write them."""
    try:
        items = parse_many(text)
    except ValueError:
        raise ValueError(NOTATION_HINT) from None
    if any(item.amount < 1 for item in items):
        raise ValueError("every amount must be at least 1")
    return tuple(items)


@dataclass(frozen=True)
class LimitInForce:
    """One variable's limits as enforced: `text` in the `limits` notation ("" for none) and where it came from."""

    variable: str
    text: str
    source: str

    @property
    def items(self) -> tuple[RateLimitItem, ...]:
        """The limits, each amount per window; empty when there is none."""
        return parse_limits(self.text) if self.text else ()

    def describe(self) -> str:
        """One line for people: "MAIL_RATE_LIMIT: 30/minute (from MAIL_RATE_LIMIT)"."""
        return f"{self.variable}: {self.text or 'none'} ({self.source})"


@dataclass(frozen=True)
class LimitsInForce:
    """The sending limits and the API's, as enforced."""

    messages: LimitInForce
    recipients: LimitInForce
    api: LimitInForce

    def each(self) -> tuple[LimitInForce, LimitInForce, LimitInForce]:
        """The three, in the order check-mail prints them."""
        return self.messages, self.recipients, self.api

    @property
    def longest_period(self) -> int | None:
        """Seconds of the longest sending window (how long a spent quota may take to come back), or None."""
        periods = [item.get_expiry() for item in (*self.messages.items, *self.recipients.items)]
        return max(periods, default=None)

    def recipient_problem(self, max_recipients: int) -> str | None:
        """Why a notification with MAX_RECIPIENTS recipients could never go under the recipient limits, or None."""
        smallest = min((item.amount for item in self.recipients.items), default=None)
        if smallest is None or smallest >= max_recipients:
            return None
        return (
            f"MAIL_RECIPIENT_RATE_LIMIT ({self.recipients.text}, {self.recipients.source}) allows {smallest} "
            f"recipients per window, fewer than MAX_RECIPIENTS ({max_recipients}): a notification with "
            "that many could never be sent; raise the limit or lower MAX_RECIPIENTS"
        )


def provider_warnings(server: str, max_recipients: int, pool_size: int) -> list[str]:
    """What MAX_RECIPIENTS and MAIL_POOL_SIZE ask beyond what MAIL_SERVER's provider documents."""
    provider = provider_of(server)
    if provider is None:
        return []
    limits, warnings = provider.limits, []
    if limits.max_recipients and max_recipients > limits.max_recipients:
        warnings.append(
            f"MAX_RECIPIENTS={max_recipients}: {provider.name} takes at most {limits.max_recipients} recipients per "
            f"message ({limits.source}); lower it"
        )
    if limits.sessions and pool_size > limits.sessions:
        warnings.append(
            f"MAIL_POOL_SIZE={pool_size}: {provider.name} refuses more than {limits.sessions} SMTP sessions of one "
            "account at once, counting every process; lower it"
        )
    return warnings


def limits_in_force(settings: RateLimitSettings, server: str | None) -> LimitsInForce:
    """The limits enforced with `settings` for MAIL_SERVER `server` (None: unknown, so no provider default)."""
    provider = provider_of(server) if server else None

    def resolve(variable: str, value: str | None, default: str) -> LimitInForce:
        if value is not None:
            return LimitInForce(variable, value, f"from {variable}")
        if provider is not None and default:
            source = f"default of {provider.name} for {server}, {provider.limits.source}"
            return LimitInForce(variable, default, source)
        return LimitInForce(variable, "", f"{variable} unset")

    defaults = provider.limits if provider is not None else None
    return LimitsInForce(
        messages=resolve("MAIL_RATE_LIMIT", settings.mail_rate_limit, defaults.messages if defaults else ""),
        recipients=resolve(
            "MAIL_RECIPIENT_RATE_LIMIT",
            settings.mail_recipient_rate_limit,
            defaults.recipients if defaults else "",
        ),
        api=resolve("API_RATE_LIMIT", settings.api_rate_limit, ""),
    )
