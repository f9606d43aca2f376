"""MailSettings refuses settings that cannot work safely, naming each variable and never showing the password."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.mail import MailSettings, SettingsError, load_settings

PASSWORD = "Pl41n-T3xt-Secret!"
VALID = {
    "MAIL_SERVER": "smtp.example.com",
    "MAIL_PORT": "587",
    "MAIL_FROM": "noreply@example.com",
    "MAIL_USERNAME": "mailer",
    "MAIL_PASSWORD": PASSWORD,
    "MAIL_STARTTLS": "true",
    "MAIL_SSL_TLS": "false",
}
IMPLICIT = {"MAIL_PORT": "465", "MAIL_STARTTLS": "false", "MAIL_SSL_TLS": "true"}
NO_TLS = {"MAIL_PORT": "25", "MAIL_STARTTLS": "false", "MAIL_SSL_TLS": "false"}


def load(monkeypatch: pytest.MonkeyPatch, changes: Mapping[str, str | None]) -> MailSettings:
    """MailSettings from VALID with `changes` (None removes a variable)."""
    for name, value in {**VALID, **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return load_settings(MailSettings)


def refused(monkeypatch: pytest.MonkeyPatch, changes: Mapping[str, str | None]) -> str:
    """The one-line error for these settings; it never holds the password."""
    with pytest.raises(SettingsError) as raised:
        load(monkeypatch, changes)
    message = str(raised.value)
    assert "\n" not in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(raised.value)
    return message


@pytest.mark.parametrize("changes", [{}, IMPLICIT], ids=["starttls-587", "implicit-465"])
def test_matching_port_and_tls_mode_load(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None]
) -> None:
    settings = load(monkeypatch, changes)
    assert settings.encrypted
    assert settings.password.get_secret_value() == PASSWORD


def test_both_tls_modes_at_once_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, {"MAIL_SSL_TLS": "true"})
    assert "MAIL_STARTTLS and MAIL_SSL_TLS are both true: set exactly one" in message


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"MAIL_PORT": "465"}, "MAIL_PORT=465 is an implicit-TLS port but MAIL_STARTTLS=true"),
        (IMPLICIT | {"MAIL_PORT": "587"}, "MAIL_PORT=587 is a STARTTLS port but MAIL_SSL_TLS=true"),
    ],
)
def test_port_that_does_not_match_the_tls_mode(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], words: str
) -> None:
    message = refused(monkeypatch, changes)
    assert words in message
    assert "MAIL_ALLOW_PORT_MISMATCH=true" in message
    assert load(monkeypatch, changes | {"MAIL_ALLOW_PORT_MISMATCH": "true"}).port == int(
        changes["MAIL_PORT"] or 0
    )


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (["MAIL_USERNAME"], "MAIL_USERNAME must be set"),
        (["MAIL_PASSWORD"], "MAIL_PASSWORD must be set"),
        (["MAIL_USERNAME", "MAIL_PASSWORD"], "MAIL_USERNAME and MAIL_PASSWORD must be set"),
    ],
)
def test_credentials_are_required_to_log_in(
    monkeypatch: pytest.MonkeyPatch, missing: list[str], named: str
) -> None:
    removed: dict[str, str | None] = dict.fromkeys(missing)
    message = refused(monkeypatch, removed)
    assert f"{named} when MAIL_USE_CREDENTIALS=true" in message
    assert not load(monkeypatch, removed | {"MAIL_USE_CREDENTIALS": "false"}).use_credentials


@pytest.mark.parametrize(
    "server", ["smtp.example.com", "10.0.0.5", "localhost.example.com", "127.0.0.1.nip.io"]
)
def test_login_in_clear_text_is_refused(monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    message = refused(monkeypatch, NO_TLS | {"MAIL_SERVER": server})
    assert (
        f"MAIL_USE_CREDENTIALS=true without TLS would send the password in clear text to {server}" in message
    )
    assert "MAIL_STARTTLS=true" in message


@pytest.mark.parametrize("server", ["localhost", "127.0.0.1", "127.0.0.53", "::1", "[::1]"])
def test_login_in_clear_text_is_allowed_on_loopback(monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    assert not load(monkeypatch, NO_TLS | {"MAIL_SERVER": server}).encrypted


def test_relay_without_login_or_tls_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, NO_TLS | {"MAIL_USE_CREDENTIALS": "false"})
    assert not settings.encrypted


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (
            {"MAIL_SSL_TLS": "true", "MAIL_USERNAME": None},
            ["MAIL_STARTTLS and MAIL_SSL_TLS", "MAIL_USERNAME must"],
        ),
        (
            {"MAIL_PORT": "0", "MAIL_TIMEOUT": "soon", "MAIL_FROM": "nobody"},
            ["MAIL_PORT:", "MAIL_TIMEOUT:", "MAIL_FROM:"],
        ),
    ],
    ids=["security-rules", "field-values"],
)
def test_every_problem_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], named: list[str]
) -> None:
    message = refused(monkeypatch, changes)
    assert all(words in message for words in named), message
    assert "soon" not in message


def test_missing_cert_bundle_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = refused(monkeypatch, {"MAIL_CERT_BUNDLE": str(tmp_path / "absent.pem")})
    assert "MAIL_CERT_BUNDLE:" in message


@pytest.mark.parametrize(
    "content", [b"not a certificate\n", b"\x30\x82\x01\x00binary DER"], ids=["text", "binary"]
)
def test_cert_bundle_that_is_not_pem_stops_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(content)
    message = refused(monkeypatch, {"MAIL_CERT_BUNDLE": str(bundle)})
    assert f"MAIL_CERT_BUNDLE={bundle} is not a PEM file of CA certificates" in message
    assert "\n" not in message


def test_a_secret_in_the_wrong_variable_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, {"MAIL_PORT": PASSWORD})
    assert message.startswith("invalid settings: MAIL_PORT: ")


@pytest.mark.parametrize(
    "changes",
    [{"MAIL_PORT": PASSWORD}, {"MAIL_SERVER": "mail.example.com", "MAIL_PASSWORD": "x", **NO_TLS}],
    ids=["field-error", "model-error"],
)
def test_pydantic_errors_from_the_bare_model_hide_the_input(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str]
) -> None:
    """Code that builds MailSettings() directly (the package is a drop-in) gets no secret in tracebacks."""
    for name, value in (VALID | changes).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        MailSettings()
    assert "input_value" not in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_settings_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, {})
    for text in (
        str(settings),
        repr(settings),
        settings.model_dump_json(),
        repr(settings.connection_config()),
    ):
        assert PASSWORD not in text


def test_secret_forms_cover_every_encoding_smtp_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    forms = load(monkeypatch, {}).secret_forms()
    assert forms == (
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),  # AUTH LOGIN
        base64.b64encode(f"\0mailer\0{PASSWORD}".encode()).decode(),  # AUTH PLAIN
    )
    assert load(monkeypatch, {"MAIL_PASSWORD": None, "MAIL_USE_CREDENTIALS": "false"}).secret_forms() == ()


@pytest.mark.parametrize("name", ["FROM_ADDRESS", "MAIL_FROM_ADDRESS"])
def test_only_mail_from_sets_the_sender(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "attacker@evil.test")

    assert load(monkeypatch, {}).from_address == "noreply@example.com"
    assert "MAIL_FROM is required" in refused(monkeypatch, {"MAIL_FROM": None})
