"""compose.yaml and the Dockerfile, checked by structure (no Docker engine runs here).

The rendered compose file must be valid Compose, wire `.env` into the service (which alone may turn
DEV_MODE on), point the mail settings at Mailpit in a way MailSettings accepts, give every service a health check that its
dependants wait for, and add Redis and a worker only for delivery=celery.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import check_schema

PACKAGE = "oscis_mail_service"


def compose(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / "compose.yaml").read_text())
    return loaded


def published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port, from "host_ip:host:container" strings."""
    ports: dict[int, int] = {}
    for mapping in service.get("ports", []):
        *_, host, container = str(mapping).split(":")
        ports[int(container)] = int(host)
    return ports


def dotenv(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def test_compose_file_is_valid_compose(project: Path) -> None:
    check_schema(project, "vendor.compose-spec", "compose.yaml")


def test_services_match_the_delivery(project: Path, delivery: str) -> None:
    services = compose(project)["services"]
    if delivery == "celery":
        assert set(services) == {"api", "mailpit", "redis", "worker", "postgres"}
        assert services["postgres"]["image"].startswith("postgres:")
        worker = services["worker"]
        assert worker["command"][:4] == ["celery", "-A", f"{PACKAGE}.worker", "worker"]
        assert worker["build"] == services["api"]["build"]
        assert worker["env_file"] == ".env"
        assert services["redis"]["image"].startswith("redis:")
        for name in ("api", "worker"):
            assert services[name]["environment"]["CELERY_BROKER_URL"] == "redis://redis:6379/0"
            assert services[name]["environment"]["MAIL_SERVER"] == "mailpit"
            assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    else:
        assert set(services) == {"api", "mailpit"}
        assert "CELERY_BROKER_URL" not in services["api"]["environment"]


def test_the_service_reads_env_and_sends_to_mailpit(project: Path) -> None:
    services = compose(project)["services"]
    api, mailpit = services["api"], services["mailpit"]
    assert api["build"] == "."
    assert api["env_file"] == ".env"
    assert published(api) == {8000: 8000}
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert published(mailpit) == {1025: 1025, 8025: 8025}
    environment = api["environment"]
    assert (environment["MAIL_SERVER"], int(environment["MAIL_PORT"])) == ("mailpit", 1025)
    # Everything published is bound to loopback only.
    for service in services.values():
        assert all(str(mapping).startswith("127.0.0.1:") for mapping in service.get("ports", []))


def load_settings(project: Path, dotenv_file: dict[str, str], tmp_path: Path, code: str = "") -> str:
    """Load the service's settings from `dotenv_file` overridden by compose's environment, as compose does;
    print the mail connection. Returns stdout; fails with stderr when the settings are refused."""
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(project / "src"),
        **dotenv_file,
        **compose(project)["services"]["api"]["environment"],
    }
    code = (
        f"from {PACKAGE}.settings import Settings\n"
        "mail = Settings.from_env().mail\n"
        "mail.connection_config()\n"
        "print(mail.server, mail.port, mail.encrypted, mail.use_credentials, mail.cert_bundle)\n"
    ) + code
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_mailpit_environment_is_accepted_by_the_settings(
    project: Path, delivery: str, tmp_path: Path
) -> None:
    """`.env` as the README's Docker section makes it: .env.example with a generated API key."""
    docker = (project / "README.md").read_text().split("## Running with Docker and Mailpit", 1)[1]
    assert "API_KEYS" in docker.split("\n## ", 1)[0]
    env_file = {**dotenv(project / ".env.example"), "API_KEYS": secrets.token_urlsafe(32)}
    code = f"from {PACKAGE}.worker import CelerySettings\nCelerySettings()\n" if delivery == "celery" else ""

    stdout = load_settings(project, env_file, tmp_path, code)

    assert stdout.split() == ["mailpit", "1025", "False", "False", "None"]


def test_compose_does_not_turn_dev_mode_on(project: Path, tmp_path: Path) -> None:
    """DEV_MODE (which accepts the documentation's placeholder key) is for `.env` to set, not compose."""
    for name, service in compose(project)["services"].items():
        assert "DEV_MODE" not in service.get("environment", {}), name
    with pytest.raises(AssertionError, match="API_KEYS: a key is a placeholder"):
        load_settings(project, dotenv(project / ".env.example"), tmp_path)
    dev_mode = {**dotenv(project / ".env.example"), "DEV_MODE": "true"}  # the developer's own choice
    assert load_settings(project, dev_mode, tmp_path).split()[:2] == ["mailpit", "1025"]


def test_every_dependency_is_awaited_healthy(project: Path) -> None:
    services = compose(project)["services"]
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    assert set(services["api"]["depends_on"]) == set(services) - {"api", "worker"}
    # The api migrates the store before it serves; the worker waits for it.
    assert "migrate &&" in " ".join(services["api"]["command"])
    if "worker" in services:
        assert "api" in services["worker"]["depends_on"]


def test_api_health_checks_probe_readiness_on_the_served_port(project: Path) -> None:
    test = compose(project)["services"]["api"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    compile(code, "healthcheck", "exec")
    assert "urlopen('http://127.0.0.1:8000/health/ready'" in code  # readiness, not liveness
    dockerfile = (project / "Dockerfile").read_text()
    healthcheck = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert healthcheck is not None
    assert yaml.safe_load(healthcheck.group(1)) == ["python", "-c", code]
    cmd = re.search(r"^CMD (\[.*\])$", (project / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1)) == [
        "uvicorn",
        f"{PACKAGE}.main:app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]


def test_image_runs_as_non_root_and_keeps_env_out(project: Path) -> None:
    dockerfile = (project / "Dockerfile").read_text().splitlines()
    assert [line for line in dockerfile if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    assert users[-1] not in {"root", "0"}
    assert dockerfile.index(f"USER {users[-1]}") < next(
        i for i, line in enumerate(dockerfile) if line.startswith("CMD")
    )
    assert ".env" in (project / ".dockerignore").read_text().splitlines()
    assert not any(line.startswith(("COPY . ", "ADD . ")) for line in dockerfile)
