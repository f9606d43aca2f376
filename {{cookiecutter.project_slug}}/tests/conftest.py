"""Shared fixtures: a real SMTP server (STARTTLS, trustme CA, AUTH required) and settings that point at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.mail import MailSettings
from {{ cookiecutter.package_name }}.main import create_app

{% if cookiecutter.delivery == "celery" -%}
from .celery_worker import celery_tasks, celery_worker  # noqa: F401 - fixtures: a real worker serves every test
{% endif -%}
from .smtp_server import SmtpServer, running_server

SERVICE_VARIABLE_PREFIXES = ("MAIL_", "API_", "MAX_", "DEV_", "LOG_LEVEL", "ALLOWED_"{% if cookiecutter.delivery == "celery" %}, "CELERY_"{% endif %})


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's .env or MAIL_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(SERVICE_VARIABLE_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def smtp_server(ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A STARTTLS + AUTH server; the MAIL_* environment points at it."""
    with running_server(ca, ca_file) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def mail_settings(smtp_server: SmtpServer) -> MailSettings:
    return MailSettings()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


API_KEY = "test-api-key-0123456789"
ROTATED_API_KEY = "rotated-api-key-9876543210"


def service(monkeypatch: pytest.MonkeyPatch, **env: str) -> TestClient:
    """The service configured from the environment plus `env`; use it in a `with` block (runs the lifespan)."""
    monkeypatch.setenv("API_KEYS", f"{API_KEY},{ROTATED_API_KEY}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return TestClient(create_app(), base_url="http://localhost")


@pytest.fixture
def client(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The service, delivering to `smtp_server`; accepts API_KEY and ROTATED_API_KEY."""
    with service(monkeypatch) as test_client:
        yield test_client


def auth(key: str = API_KEY) -> dict[str, str]:
    """The Authorization header for `key`."""
    return {"Authorization": f"Bearer {key}"}
