"""Shared fixtures: a real SMTP server (STARTTLS, trustme CA, AUTH required) and settings that point at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from {{ cookiecutter.package_name }}.mail import MailSettings

from .smtp_server import SmtpServer, running_server


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
        if name.startswith(("MAIL_", "API_", "CELERY_", "DEV_")):
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
