"""BOUNCE_* settings: the mailbox URL read as users write it; every mistake one line naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.feedback.bounces import BounceSettings
from {{ cookiecutter.package_name }}.mail import SettingsError, load_settings

SECRET = "Bounce-Test-Passw0rd"


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> BounceSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(BounceSettings)


def error_of(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(SettingsError) as raised:
        load(monkeypatch, **env)
    message = str(raised.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def test_nothing_set_reads_no_mailbox_and_sends_without_verp(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)

    assert (settings.domain, settings.mailbox, settings.imap_password) == (None, None, None)


@pytest.mark.parametrize(
    ("url", "user", "host", "port", "mailbox"),
    [
        (
            "imaps://bounces%40example.com@imap.example.com/INBOX",
            "bounces@example.com",
            "imap.example.com",
            993,
            "INBOX",
        ),
        (
            "imaps://bounces@example.com@imap.example.com:9993",
            "bounces@example.com",
            "imap.example.com",
            9993,
            "INBOX",
        ),
        (
            "IMAPS://bounces@Mail.Example.com/INBOX/Bounces/",
            "bounces",
            "mail.example.com",
            993,
            "INBOX/Bounces",
        ),
        ("imaps://bounces@[::1]/Bounce%20reports", "bounces", "::1", 993, "Bounce reports"),
    ],
)
def test_the_mailbox_url_is_read_as_written(
    monkeypatch: pytest.MonkeyPatch, url: str, user: str, host: str, port: int, mailbox: str
) -> None:
    target = load(monkeypatch, BOUNCE_IMAP_URL=url, BOUNCE_IMAP_PASSWORD=SECRET).mailbox

    assert target is not None
    assert (target.user, target.host, target.port, target.mailbox, target.tls) == (
        user,
        host,
        port,
        mailbox,
        True,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_imap_is_allowed_on_a_loopback_host_only(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    target = load(
        monkeypatch, BOUNCE_IMAP_URL=f"imap://bounces@{host}/INBOX", BOUNCE_IMAP_PASSWORD=SECRET
    ).mailbox

    assert target is not None
    assert (target.tls, target.port) == (False, 143)


def test_plain_imap_to_another_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_of(
        monkeypatch, BOUNCE_IMAP_URL="imap://bounces@imap.example.com/INBOX", BOUNCE_IMAP_PASSWORD=SECRET
    )

    assert message.startswith("invalid settings: BOUNCE_IMAP_URL: uses imap:// for imap.example.com")
    assert "use imaps://" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://imap.example.com/INBOX", "BOUNCE_IMAP_URL: write it as imaps://user@host:993/INBOX"),
        ("imaps://imap.example.com/INBOX", "BOUNCE_IMAP_URL: names no user"),
        ("imaps://bounces@imap.example.com:99999/INBOX", "BOUNCE_IMAP_URL: its port is not a number"),
        ("imaps://bounces@imap.example.com/INBOX?x=1", "BOUNCE_IMAP_URL: has a ?query"),
        (
            "imaps://bounces@imap.example.com/Bo%C3%AEte",
            "BOUNCE_IMAP_URL: its mailbox (the path) must be printable ASCII",
        ),
        (
            f"imaps://bounces:{SECRET}@imap.example.com/INBOX",
            "BOUNCE_IMAP_URL: holds a password: put the password in BOUNCE_IMAP_PASSWORD",
        ),
    ],
)
def test_a_bad_mailbox_url_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    assert expected in error_of(monkeypatch, BOUNCE_IMAP_URL=url, BOUNCE_IMAP_PASSWORD=SECRET)


def test_the_password_is_required_with_a_mailbox_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_of(monkeypatch, BOUNCE_IMAP_URL="imaps://bounces@imap.example.com/INBOX")
    assert "BOUNCE_IMAP_PASSWORD is required when BOUNCE_IMAP_URL is set" in message

    settings = load(monkeypatch, BOUNCE_IMAP_PASSWORD=SECRET)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


@pytest.mark.parametrize("domain", ["bounces+x@example.com", "example", "exa mple.com", "-bad.example.com"])
def test_a_bad_bounce_domain_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, domain: str) -> None:
    assert "BOUNCE_DOMAIN: write a bare domain such as bounce.example.com" in error_of(
        monkeypatch, BOUNCE_DOMAIN=domain
    )


def test_the_bounce_domain_is_kept_in_lowercase(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(monkeypatch, BOUNCE_DOMAIN="Bounce.Example.COM.").domain == "bounce.example.com"


def test_the_backoff_cap_is_at_least_the_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_of(monkeypatch, BOUNCE_POLL_INTERVAL="120", BOUNCE_RETRY_BACKOFF_MAX="60")

    assert "BOUNCE_RETRY_BACKOFF_MAX must be at least BOUNCE_POLL_INTERVAL" in message


def test_a_ca_bundle_that_is_no_pem_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")

    message = error_of(monkeypatch, BOUNCE_IMAP_CA_BUNDLE=str(bundle))

    assert f"BOUNCE_IMAP_CA_BUNDLE={bundle} is not a PEM file of CA certificates" in message


def test_the_ca_bundle_is_trusted_besides_the_system_cas(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    without = load(monkeypatch).tls_context.cert_store_stats()["x509_ca"]
    monkeypatch.setenv("BOUNCE_IMAP_CA_BUNDLE", str(ca_file))

    context = load(monkeypatch).tls_context

    assert context.cert_store_stats()["x509_ca"] == without + 1
    assert context.check_hostname
