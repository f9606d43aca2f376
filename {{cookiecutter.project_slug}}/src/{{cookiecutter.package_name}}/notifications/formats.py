"""Template filters that write data the way the message's locale does, with Babel (CLDR data).

`{{ '{{' }} order_date | date("long") }}` gives "7 December 2026" in en and "7. Dezember 2026" in de-CH;
`number` and `money("EUR")` likewise. Dates may be given as ISO 8601 strings (JSON has no date type).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context

__all__ = ["FILTERS"]


@lru_cache(maxsize=256)
def _babel(tag: str) -> Locale:
    return Locale.parse(tag, sep="-")


def _when(value: Any) -> date | datetime:
    if isinstance(value, date):
        return value
    text = str(value)
    return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)


@pass_context
def date_filter(context: Context, value: Any, form: str = "medium") -> str:
    """`value` (a date, or an ISO 8601 string) written for the locale; with a time when it has one."""
    when = _when(value)
    locale = _babel(context["locale"])
    if isinstance(when, datetime):
        return format_datetime(when, form, locale=locale)
    return format_date(when, form, locale=locale)


@pass_context
def number_filter(context: Context, value: Any) -> str:
    """`value` with the locale's decimal and grouping signs."""
    return format_decimal(Decimal(str(value)), locale=_babel(context["locale"]))


@pass_context
def money_filter(context: Context, value: Any, currency: str) -> str:
    """`value` as an amount of `currency` (ISO 4217, such as EUR), written for the locale."""
    return format_currency(Decimal(str(value)), currency, locale=_babel(context["locale"]))


FILTERS = {"date": date_filter, "number": number_filter, "money": money_filter}
