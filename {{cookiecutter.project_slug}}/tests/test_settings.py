"""Service settings: .env and environment, API keys, and start-up errors that name every bad variable."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from {{ cookiecutter.package_name }}.api.auth import Authenticator
from {{ cookiecutter.package_name }}.delivery.settings import DeliverySettings
from {{ cookiecutter.package_name }}.mail import MailSettings, SettingsError
from {{ cookiecutter.package_name }}.mail.core.loading import EnvSettings
from {{ cookiecutter.package_name }}.observability.logs import LogSettings
from {{ cookiecutter.package_name }}.observability.metrics import MetricsSettings
from {{ cookiecutter.package_name }}.settings import MIN_API_KEY_BITS, ApiKey, ApiSettings, Settings, estimated_bits
from {{ cookiecutter.package_name }}.store import StoreSettings

from .smtp_server import PASSWORD, SmtpServer
from .test_docs import settings_models

API_KEY = "a-valid-api-key-0123"
ALPHA_KEY = "alpha-key-7Hq2xW9pLm4Rt8Zc"
BETA_KEY = "beta-key-Jd83KsPq02LxVn5e"


def test_env_file_is_read_and_the_environment_wins(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"API_KEYS={API_KEY}\nMAX_RECIPIENTS=7\nMAIL_FROM_NAME=From Env File\n")
    monkeypatch.setenv("MAX_RECIPIENTS", "9")
    monkeypatch.delenv("MAIL_FROM_NAME")

    settings = Settings.from_env()

    assert [key.secret.get_secret_value() for key in settings.api.api_keys] == [API_KEY]
    assert settings.api.max_recipients == 9
    assert settings.mail.from_name == "From Env File"


def test_an_empty_variable_means_the_default_even_when_env_file_sets_one(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Exported empty (`VAR=`, or compose's `${VAR}` of an unset variable), a variable hides .env's value."""
    in_env_file = {
        "MAX_RECIPIENTS": "7",
        "MAIL_FROM_NAME": "From Env File",
        "MAIL_TIMEOUT": "3",
        "LOG_LEVEL": "DEBUG",
        "DATABASE_URL": "sqlite+aiosqlite:///other.db",
        "DELIVERY_LEASE": "30",
        "METRICS_ENABLED": "false",
    }
    lines = [
        f"API_KEYS={API_KEY}",
        "MAIL_OAUTH_PROVIDER=",
        *(f"{name}={value}" for name, value in in_env_file.items()),
    ]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    for name in in_env_file:
        monkeypatch.setenv(name, "")

    settings = Settings.from_env()

    defaults = {
        "MAX_RECIPIENTS": ApiSettings.model_fields["max_recipients"].default,
        "MAIL_FROM_NAME": MailSettings.model_fields["from_name"].default,
        "MAIL_TIMEOUT": MailSettings.model_fields["timeout"].default,
        "LOG_LEVEL": LogSettings.model_fields["log_level"].default,
        "DATABASE_URL": StoreSettings.model_fields["database_url"].default,
        "DELIVERY_LEASE": DeliverySettings.model_fields["lease"].default,
        "METRICS_ENABLED": MetricsSettings.model_fields["enabled"].default,
    }
    loaded = {
        "MAX_RECIPIENTS": settings.api.max_recipients,
        "MAIL_FROM_NAME": settings.mail.from_name,
        "MAIL_TIMEOUT": settings.mail.timeout,
        "LOG_LEVEL": settings.logs.log_level,
        "DATABASE_URL": settings.store.database_url,
        "DELIVERY_LEASE": settings.delivery.lease,
        "METRICS_ENABLED": settings.metrics.enabled,
    }
    assert loaded == defaults
    assert settings.mail.oauth_provider is None  # an empty line in .env is no setting either
    monkeypatch.delenv("MAX_RECIPIENTS")  # unset, the .env value counts again
    assert Settings.from_env().api.max_recipients == 7


def test_every_settings_class_reads_the_environment_alike() -> None:
    """Each one is an `EnvSettings`, so an empty variable means the same thing for every variable."""
    for model in settings_models():
        assert issubclass(model, EnvSettings), model
        assert not model.model_config.get("env_ignore_empty"), model


def test_api_keys_are_comma_separated_for_rotation(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS", f" {API_KEY} , second-key-0123456789 ,")
    keys = Settings.from_env().api.api_keys
    assert [key.secret.get_secret_value() for key in keys] == [API_KEY, "second-key-0123456789"]
    assert API_KEY not in repr(keys)


def test_named_keys_belong_to_their_clients_and_unnamed_ones_to_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotated = "beta-rotated-Wf61BnQz7Yc4Ku"
    monkeypatch.setenv("API_KEYS", f"alpha:{ALPHA_KEY}, beta:{BETA_KEY},beta_2-x:{rotated},{API_KEY}")

    keys = ApiSettings().api_keys

    assert [(key.client, key.secret.get_secret_value()) for key in keys] == [
        ("alpha", ALPHA_KEY),
        ("beta", BETA_KEY),
        ("beta_2-x", rotated),
        ("default", API_KEY),
    ]
    assert ALPHA_KEY not in repr(keys)


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        (f"Alpha:{ALPHA_KEY}", "a client name is lowercase letters, digits, - and _"),
        (f"al pha:{ALPHA_KEY}", "a client name is lowercase letters, digits, - and _"),
        (f":{ALPHA_KEY}", "a client name is lowercase letters, digits, - and _"),
        (f"alpha:{ALPHA_KEY},beta:{ALPHA_KEY}", "one key is listed for two clients"),
    ],
    ids=["uppercase", "space", "empty-name", "one-key-two-clients"],
)
def test_bad_client_entries_are_named_without_the_key(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, entries: str, problem: str
) -> None:
    monkeypatch.setenv("API_KEYS", entries)

    with pytest.raises(SettingsError) as raised:
        Settings.from_env()

    message = str(raised.value)
    assert f"API_KEYS: {problem}" in message
    assert ALPHA_KEY not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "key",
    [
        "a" * 16,
        "aaaaaaaaaaaaaaab",
        "ab" * 20,
        "abcdabcdabcdabcdabcdabcd",
        "12341234123412341234",
    ],
)
def test_guessable_keys_are_refused_saying_how_to_make_a_good_one(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("API_KEYS", f"{API_KEY},alpha:{key}")

    with pytest.raises(SettingsError) as raised:
        Settings.from_env()

    message = str(raised.value)
    assert f"API_KEYS: a key is too easy to guess (under {MIN_API_KEY_BITS} bits" in message
    assert "secrets.token_urlsafe(32)" in message
    assert key not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "generate",
    [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(16), lambda: uuid.uuid4().hex],
    ids=["token_urlsafe-32", "token_hex-16", "uuid4-hex"],
)
def test_generated_keys_always_pass(generate: Callable[[], str]) -> None:
    assert min(estimated_bits(generate()) for _ in range(10_000)) >= MIN_API_KEY_BITS


@pytest.mark.parametrize(
    ("key", "bits"),
    [
        ("a" * 40, 0.0),  # drawn from one character
        ("ab" * 20, 40.0),  # from two: 40 times 1 bit
        ("abcdefghijklmnop", 75.2),  # 16 different in 16: at most the 26 lowercase letters
        ("Kq3ZtR8wLp2Xv9Nb", 95.3),  # at most the 62 letters and digits
        ("3f9a0c7e5b1d2486a9e4c0f17b3d5e82", 137.7),  # all 16 hex digits in 32: from 19.7 characters
    ],
)
def test_the_estimate_is_the_length_times_the_alphabet_the_key_seems_drawn_from(
    key: str, bits: float
) -> None:
    assert estimated_bits(key) == pytest.approx(bits, abs=0.1)


def test_every_bad_variable_is_named_in_one_line_without_values(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS", "short-secret")
    monkeypatch.setenv("MAX_RECIPIENTS", "many")
    monkeypatch.setenv("MAIL_PORT", "not-a-port")
    monkeypatch.delenv("MAIL_FROM")

    with pytest.raises(SettingsError) as raised:
        Settings.from_env()

    message = str(raised.value)
    assert "\n" not in message
    for name in ("API_KEYS:", "MAX_RECIPIENTS:", "MAIL_PORT:", "MAIL_FROM is required"):
        assert name in message
    assert "short-secret" not in message
    assert "not-a-port" not in message
    assert PASSWORD not in message


def test_missing_api_keys_say_how_to_make_one(smtp_server: SmtpServer) -> None:
    with pytest.raises(SettingsError, match="API_KEYS is required"):
        Settings.from_env()


def test_bad_settings_stop_start_up_with_one_line_and_exit_code_2(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS", API_KEY)
    monkeypatch.setenv("MAIL_USERNAME", "")
    monkeypatch.setenv("MAIL_PASSWORD", PASSWORD)
    monkeypatch.setenv("MAIL_STARTTLS", "false")
    monkeypatch.setenv("MAIL_SERVER", "smtp.example.com")
    command = [sys.executable, "-c", "import {{ cookiecutter.package_name }}.main as m; m.app"]

    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "MAIL_USE_CREDENTIALS=true without TLS" in line
    assert PASSWORD not in line


@pytest.mark.parametrize(
    "key",
    [
        "change-me-local-dev-api-key",
        "your-api-key-goes-here-0123",
        "example-key-0123456789",
        "A-PLACEHOLDER-0123456789",
        "ChangeMe0123456789abcdef",
    ],
)
def test_placeholder_keys_are_refused_outside_dev_mode(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("API_KEYS", f"{API_KEY},{key}")

    with pytest.raises(SettingsError) as raised:
        Settings.from_env()

    message = str(raised.value)
    assert "API_KEYS: a key is a placeholder" in message
    assert "DEV_MODE=true" in message
    assert "secrets.token_urlsafe" in message
    assert key not in message
    assert len(message.splitlines()) == 1

    monkeypatch.setenv("DEV_MODE", "true")
    assert len(Settings.from_env().api.api_keys) == 2


def test_the_env_example_key_is_refused_outside_dev_mode(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    [key] = [line.split("=", 1)[1] for line in example.splitlines() if line.startswith("API_KEYS=")]
    monkeypatch.setenv("API_KEYS", key)

    with pytest.raises(SettingsError, match="API_KEYS: a key is a placeholder"):
        Settings.from_env()


def test_a_direct_api_settings_load_hides_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "short-secret")
    monkeypatch.setenv("MAX_RECIPIENTS", "short-secret-too")

    with pytest.raises(ValidationError) as raised:
        ApiSettings()

    assert "short-secret" not in str(raised.value)


def test_a_key_names_its_client_and_keys_of_another_length_do_not_match() -> None:
    keys = (ApiKey("default", SecretStr(API_KEY)), ApiKey("beta", SecretStr(BETA_KEY)))
    clients = Authenticator(ApiSettings(api_keys=keys))

    assert clients.client_of(API_KEY) == "default"
    assert clients.client_of(BETA_KEY) == "beta"
    assert clients.client_of(API_KEY[:-1]) is None
    assert clients.client_of(API_KEY + "x") is None
    assert clients.client_of("") is None
