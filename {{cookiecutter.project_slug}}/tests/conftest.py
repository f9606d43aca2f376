"""Shared fixtures: a real SMTP server (STARTTLS, trustme CA, AUTH required) and settings that point at it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.mail import MailSettings
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.observability.logs import OWN_LOGGERS
from {{ cookiecutter.package_name }}.store import StoreSettings, open_engine, upgrade

{% if cookiecutter.delivery == "celery" -%}
from .celery_worker import celery_tasks, celery_worker  # noqa: F401 - fixtures: a real worker serves every test
{% endif -%}
from .dovecot import DovecotServer, dovecot_binary, running_dovecot
from .postgres import PostgresServer, postgres_bin, running_postgres
from .smtp_server import SmtpServer, running_server

SERVICE_VARIABLE_PREFIXES = (
    "MAIL_",
    "API_",
    "MAX_",
    "DEV_",
    "LOG_",
    "DATABASE_URL",
    "DELIVERY_",
    "IDEMPOTENCY_KEY_TTL",
    "BODY_RETENTION",
    "ROW_RETENTION",
    "ALLOWED_",
    "BOUNCE_",
    "WEBHOOK_",
{%- if cookiecutter.delivery == "celery" %}
    "CELERY_",
{%- endif %}
)


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


@pytest.fixture(autouse=True)
def restored_log_levels() -> Iterator[None]:
    """`create_app` sets log levels process-wide (LOG_LEVEL): each test starts from the same ones."""
    loggers = [logging.getLogger(), *map(logging.getLogger, OWN_LOGGERS)]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which files are created readable by every local user unless asked otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session; skipped, saying why, when PostgreSQL is not installed."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql)")
    with running_postgres(binaries) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot(ca: trustme.CA) -> Iterator[DovecotServer]:
    """A Dovecot IMAP server (implicit TLS, certificate from `ca`) for the session; skipped, saying why,
    when Dovecot is not installed."""
    if dovecot_binary() is None:
        pytest.skip("Dovecot is not installed (Debian/Ubuntu: apt-get install dovecot-imapd)")
    with running_dovecot(ca) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh, empty store on each dialect; DATABASE_URL points at it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.database()
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


API_KEY = "test-api-key-0123456789"
LOCAL_PEER = ("127.0.0.1", 50000)
"""The address requests of `service()` come from: this machine, like a developer's browser."""
ROTATED_API_KEY = "rotated-api-key-9876543210"


def service(monkeypatch: pytest.MonkeyPatch, **env: str) -> TestClient:
    """The service configured from the environment plus `env`; use it in a `with` block (runs the lifespan)."""
    monkeypatch.setenv("API_KEYS", f"{API_KEY},{ROTATED_API_KEY}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    migrate(StoreSettings().database_url)
    return TestClient(create_app(), base_url="http://localhost", client=LOCAL_PEER)


def migrate(database_url: str) -> None:
    """Create or upgrade the store at `database_url`, as `python -m {{ cookiecutter.package_name }} migrate` does."""

    async def run() -> None:
        engine = open_engine(database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def client(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The service, delivering to `smtp_server`; accepts API_KEY and ROTATED_API_KEY."""
    with service(monkeypatch) as test_client:
        yield test_client


def auth(key: str = API_KEY) -> dict[str, str]:
    """The Authorization header for `key`."""
    return {"Authorization": f"Bearer {key}"}
