"""MAIL_RATE_LIMIT, MAIL_RECIPIENT_RATE_LIMIT, API_RATE_LIMIT: their notation, the providers' defaults, checks."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.mail import SettingsError
from {{ cookiecutter.package_name }}.mail.providers import PROVIDERS
from {{ cookiecutter.package_name }}.ratelimit.settings import (
    RateLimitSettings,
    limits_in_force,
    parse_limits,
    provider_warnings,
)
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import API_KEY
from .smtp_server import SmtpServer

GMAIL_SOURCE = "https://support.google.com/a/answer/166852"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30/minute", [(30, 60)]),
        ("30/minute, 2000/day", [(30, 60), (2000, 86400)]),
        ("14/second", [(14, 1)]),
        ("100 per 5 minutes", [(100, 300)]),
    ],
)
def test_the_notation(text: str, expected: list[tuple[int, int]]) -> None:
    assert [(item.amount, item.get_expiry()) for item in parse_limits(text)] == expected


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAIL_RATE_LIMIT", "30 a fortnight", "MAIL_RATE_LIMIT: write an amount per period, e.g. 30/minute"),
        ("MAIL_RECIPIENT_RATE_LIMIT", "lots", "MAIL_RECIPIENT_RATE_LIMIT: write an amount per period"),
        ("API_RATE_LIMIT", "0/minute", "API_RATE_LIMIT: every amount must be at least 1"),
    ],
)
def test_a_bad_limit_stops_start_up_naming_it(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("API_KEYS", API_KEY)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env()
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unset_limits_take_the_documented_defaults_of_the_provider() -> None:
    gmail = limits_in_force(RateLimitSettings(), "smtp.gmail.com")
    assert (
        gmail.messages.describe()
        == f"MAIL_RATE_LIMIT: 2000/day (default of gmail for smtp.gmail.com, {GMAIL_SOURCE})"
    )
    assert gmail.recipients.text == "10000/day"
    assert gmail.api.describe() == "API_RATE_LIMIT: none (API_RATE_LIMIT unset)"
    office365 = limits_in_force(RateLimitSettings(), "smtp.office365.com")
    assert (office365.messages.text, office365.recipients.text) == ("30/minute", "10000/day")
    assert office365.longest_period == 86400


def test_a_variable_wins_over_the_default_and_a_server_of_no_provider_has_none() -> None:
    settings = RateLimitSettings(mail_rate_limit="100/hour")
    gmail = limits_in_force(settings, "smtp.gmail.com")
    assert gmail.messages.describe() == "MAIL_RATE_LIMIT: 100/hour (from MAIL_RATE_LIMIT)"
    assert gmail.recipients.text == "10000/day"  # the other one keeps its default
    own = limits_in_force(RateLimitSettings(), "mail.example.org")
    assert [limit.text for limit in own.each()] == ["", "", ""]
    assert own.longest_period is None


def test_every_provider_default_is_written_in_the_notation() -> None:
    for provider in PROVIDERS:
        for text in (provider.limits.messages, provider.limits.recipients):
            if text:
                assert parse_limits(text), provider.name
        if provider.limits.messages or provider.limits.max_recipients:
            assert provider.limits.source.startswith("https://"), provider.name


def test_a_recipient_limit_below_max_recipients_stops_start_up(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS", API_KEY)
    monkeypatch.setenv("MAX_RECIPIENTS", "50")
    monkeypatch.setenv("MAIL_RECIPIENT_RATE_LIMIT", "1000/day, 20/minute")
    with pytest.raises(SettingsError) as raised:
        Settings.from_env()
    assert str(raised.value) == (
        "invalid settings: MAIL_RECIPIENT_RATE_LIMIT (1000/day, 20/minute, from MAIL_RECIPIENT_RATE_LIMIT) allows "
        "20 recipients per window, fewer than MAX_RECIPIENTS (50): a notification with that many could never be "
        "sent; raise the limit or lower MAX_RECIPIENTS"
    )
    monkeypatch.setenv("MAX_RECIPIENTS", "20")
    assert Settings.from_env().limits_in_force.recipients.text == "1000/day, 20/minute"


def test_max_recipients_and_the_pool_beyond_the_providers_caps_are_warned_about() -> None:
    assert provider_warnings("smtp.office365.com", 500, 3) == []
    warnings = provider_warnings("smtp.office365.com", 600, 4)
    assert warnings[0].startswith("MAX_RECIPIENTS=600: office365 takes at most 500 recipients per message")
    assert warnings[1].startswith(
        "MAIL_POOL_SIZE=4: office365 refuses more than 3 SMTP sessions of one account"
    )
    assert provider_warnings("smtp.gmail.com", 101, 8) == [
        f"MAX_RECIPIENTS=101: gmail takes at most 100 recipients per message ({GMAIL_SOURCE}); lower it"
    ]
    assert provider_warnings("mail.example.org", 1000, 64) == []
