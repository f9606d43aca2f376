"""Each mail_provider preset renders the provider's real SMTP host, port, TLS mode and login convention."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from .conftest import CONTEXT, PROVIDERS, load_module, render, run_project_tests


@dataclass(frozen=True)
class Preset:
    server: str
    port: str
    tls: str  # "starttls" or "implicit"
    username: str
    hint: str  # words of the comment that says where the credential comes from


FLAGS = {"starttls": ("true", "false"), "implicit": ("false", "true")}  # MAIL_STARTTLS, MAIL_SSL_TLS
PINNED = {
    "local": Preset("127.0.0.1", "2525", "starttls", "dev", "make dev-smtp"),
    "gmail": Preset("smtp.gmail.com", "587", "starttls", "you@gmail.com", "App Password"),
    "sendgrid": Preset("smtp.sendgrid.net", "587", "starttls", "apikey", "literal word `apikey`"),
    "mailgun": Preset("smtp.mailgun.org", "587", "starttls", "postmaster@mg.example.com", "SMTP credentials"),
    "ses": Preset(
        "email-smtp.us-east-1.amazonaws.com", "587", "starttls", "your-ses-smtp-username", "AWS access keys"
    ),
    "office365": Preset(
        "smtp.office365.com", "587", "starttls", "you@yourtenant.onmicrosoft.com", "SMTP.SendAsApp"
    ),
    "postmark": Preset(
        "smtp.postmarkapp.com", "587", "starttls", "your-postmark-server-token", "Server API token"
    ),
    "custom": Preset("smtp.example.com", "587", "starttls", "your-smtp-username", "check-mail"),
}
CASES = [*({"mail_provider": name} for name in PINNED), {"mail_provider": "ses", "ses_region": "eu-west-1"}]


@dataclass(frozen=True)
class Limits:
    """What a preset writes about the provider's limits: each a documented default, the source in a comment."""

    messages: str  # MAIL_RATE_LIMIT
    recipients: str  # MAIL_RECIPIENT_RATE_LIMIT
    max_recipients: str  # MAX_RECIPIENTS: the provider's cap per message
    pool_size: str  # MAIL_POOL_SIZE
    sources: tuple[str, ...] = ()


NO_LIMITS = Limits("", "", "50", "4")
MICROSOFT = "https://learn.microsoft.com/"
PINNED_LIMITS = {
    "local": NO_LIMITS,
    "gmail": Limits("2000/day", "10000/day", "100", "4", ("https://support.google.com/a/answer/166852",)),
    "sendgrid": NO_LIMITS,
    "mailgun": NO_LIMITS,
    "ses": Limits(
        "1/second", "200/day", "50", "4", ("https://docs.aws.amazon.com/ses/latest/dg/quotas.html",)
    ),
    "office365": Limits(
        "30/minute",
        "10000/day",
        "500",
        "3",
        (
            MICROSOFT
            + "office365/servicedescriptions/exchange-online-service-description/exchange-online-limits"
            "#sending-limits",
            MICROSOFT + "exchange/troubleshoot/send-emails/smtp-submission-improvements",
        ),
    ),
    "postmark": Limits(
        "", "", "50", "4", ("https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean",)
    ),
    "custom": NO_LIMITS,
}


def env_example(project: Path) -> tuple[dict[str, str], str]:
    """The KEY=value lines of `.env.example` as a dict, and its comment lines joined."""
    lines = (project / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return values, "\n".join(line for line in lines if line.startswith("#"))


def test_every_provider_is_pinned() -> None:
    assert set(PINNED) == set(PROVIDERS) == set(PINNED_LIMITS)


@pytest.mark.parametrize("answers", CASES, ids=lambda answers: "-".join(answers.values()))
def test_preset_fills_env_example(tmp_path: Path, answers: dict[str, str]) -> None:
    values, comments = env_example(render(tmp_path, **answers))
    expected = PINNED[answers["mail_provider"]]
    if "ses_region" in answers:
        expected = replace(expected, server=f"email-smtp.{answers['ses_region']}.amazonaws.com")
    assert values["MAIL_SERVER"] == expected.server
    assert values["MAIL_PORT"] == expected.port
    assert (values["MAIL_STARTTLS"], values["MAIL_SSL_TLS"]) == FLAGS[expected.tls]
    assert values["MAIL_USERNAME"] == expected.username
    assert values["MAIL_USE_CREDENTIALS"] == "true"
    assert values["MAIL_VALIDATE_CERTS"] == "true"
    assert expected.hint in comments


@pytest.mark.parametrize("provider", PINNED_LIMITS)
def test_preset_fills_the_providers_documented_limits_naming_the_source(
    tmp_path: Path, provider: str
) -> None:
    values, comments = env_example(render(tmp_path, mail_provider=provider))
    expected = PINNED_LIMITS[provider]
    assert values["MAIL_RATE_LIMIT"] == expected.messages
    assert values["MAIL_RECIPIENT_RATE_LIMIT"] == expected.recipients
    assert values["MAX_RECIPIENTS"] == expected.max_recipients
    assert values["MAIL_POOL_SIZE"] == expected.pool_size
    assert values["API_RATE_LIMIT"] == ""
    for source in expected.sources:
        assert source in comments, source


def test_office365_signs_in_with_oauth2_and_gmail_offers_both(tmp_path: Path) -> None:
    office365, comments = env_example(render(tmp_path / "office365", mail_provider="office365"))
    assert office365["MAIL_AUTH"] == "xoauth2"
    assert office365["MAIL_OAUTH_PROVIDER"] == "microsoft"
    assert office365["MAIL_PASSWORD"] == ""
    assert {"MAIL_OAUTH_TENANT_ID", "MAIL_OAUTH_CLIENT_ID", "MAIL_OAUTH_CLIENT_SECRET"} <= set(office365)
    assert "New-ServicePrincipal" in comments
    gmail, comments = env_example(render(tmp_path / "gmail", mail_provider="gmail"))
    assert gmail["MAIL_AUTH"] == "password"
    assert "App Password" in comments
    assert "MAIL_AUTH=xoauth2, MAIL_OAUTH_PROVIDER=google" in comments


def test_office365_render_sends_and_passes_check_mail_with_xoauth2(tmp_path: Path) -> None:
    """The rendered office365 .env.example, pointed at a local token endpoint and XOAUTH2 server."""
    project = render(tmp_path, mail_provider="office365")
    result = run_project_tests(project, "tests/test_oauth.py", "-k", "env_example_preset", "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout, result.stdout


def test_the_mail_package_knows_each_preset_as_the_presets_say(default_project: Path) -> None:
    """mail/providers.py (what check-mail and sign-in know) and cookiecutter.json (what .env.example says) agree."""
    providers = load_module(default_project / "src" / "oscis_mail_service" / "mail" / "providers.py")
    presets = CONTEXT["_providers"]
    ours = {"local", "custom"}  # a loopback server, or the user's own: no provider facts
    assert {provider.name for provider in providers.PROVIDERS} == set(presets) - ours
    for name, preset in presets.items():
        server = preset["server"].format(region=CONTEXT["ses_region"])
        found = providers.provider_of(server)
        if name in ours:
            assert found is None, name
            continue
        assert found is not None, f"{name}: {server} is not recognised"
        assert (found.name, found.spf_include) == (name, preset["spf_include"])
        assert found.oauth == preset.get("oauth", {}).get("provider", "")
        assert found.oauth == "" or found.oauth in providers.OAUTH_PROVIDERS
        limits = preset.get("limits", {})
        assert found.limits == providers.SendingLimits(
            limits.get("messages", ""),
            limits.get("recipients", ""),
            limits.get("max_recipients", 0),
            limits.get("sessions", 0),
            limits.get("source", ""),
        ), name
