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


def env_example(project: Path) -> tuple[dict[str, str], str]:
    """The KEY=value lines of `.env.example` as a dict, and its comment lines joined."""
    lines = (project / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return values, "\n".join(line for line in lines if line.startswith("#"))


def test_every_provider_is_pinned() -> None:
    assert set(PINNED) == set(PROVIDERS)


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
