"""GET /health/ready on real parts: 200 while the store{{ " and the broker" if cookiecutter.delivery == "celery" else "" }} answer, 503 naming the one that does not, 200 when it is back."""

from __future__ import annotations

{%- if cookiecutter.delivery == "celery" %}

import uuid
from pathlib import Path
{%- endif %}

import pytest
from fastapi.testclient import TestClient

from .conftest import service
from .postgres import postgres_bin, running_postgres
{%- if cookiecutter.delivery == "celery" %}
from .redis_server import running_redis
{%- endif %}
from .smtp_server import SmtpServer

READY = (200, {"status": "ready"})


def readiness(client: TestClient) -> tuple[int, dict[str, object]]:
    """The status and answer of GET /health/ready, asked without a key."""
    answer = client.get("/health/ready")
    return answer.status_code, answer.json()


def not_answering(part: str) -> tuple[int, dict[str, object]]:
    return 503, {"status": "unavailable", "failing": [part], "detail": f"not answering: {part}"}


def test_ready_when_the_store_answers(client: TestClient) -> None:
    assert readiness(client) == READY
    assert client.get("/health").status_code == 200


def test_not_ready_while_the_database_is_stopped_and_ready_again_when_it_is_back(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql)")
    with (
        running_postgres(binaries) as database,
        service(monkeypatch, DATABASE_URL=database.database()) as client,
    ):
        assert readiness(client) == READY
        database.stop()
        try:
            down = readiness(client)
            alive = client.get("/health").status_code
        finally:
            database.start()
        back = readiness(client)

    assert down == not_answering("store")
    assert alive == 200  # liveness: the process is up, whatever the database does
    assert back == READY
{%- if cookiecutter.delivery == "celery" %}


def test_not_ready_while_the_broker_is_stopped_and_ready_again_when_it_is_back(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queue = f"test-{uuid.uuid4().hex}"  # nothing is sent: no message may reach the test worker's queue
    with (
        running_redis(tmp_path) as redis,
        service(monkeypatch, CELERY_BROKER_URL=redis.url, CELERY_QUEUE=queue) as client,
    ):
        assert readiness(client) == READY
        redis.stop()
        try:
            down = client.get("/health/ready")
        finally:
            redis.start()
        back = readiness(client)

    assert (down.status_code, down.json()) == not_answering("broker")
    assert str(redis.port) not in down.text  # the part's name, never its URL
    assert back == READY
{%- endif %}
