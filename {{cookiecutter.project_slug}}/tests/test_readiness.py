"""GET /health/ready on real parts: 200 while the store{{ " and the broker" if cookiecutter.delivery == "celery" else "" }} answer, 503 naming the one that does not, 200 when it is back;
one answer shared for READY_TTL{{ ", over one broker connection" if cookiecutter.delivery == "celery" else "" }}."""

from __future__ import annotations

{%- if cookiecutter.delivery == "celery" %}

import uuid
from pathlib import Path
{%- endif %}

import pytest
{%- if cookiecutter.delivery == "celery" %}
import redis
{%- endif %}
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.health import READY_TTL

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


def share_answers_for(client: TestClient, seconds: float) -> None:
    """Set how long one readiness answer is shared (0: every request checks the parts)."""
    client.app.state.readiness.ttl = seconds  # type: ignore[attr-defined]


def test_the_answer_is_shared_for_about_a_second(client: TestClient) -> None:
    assert 0.5 <= READY_TTL <= 2
    assert client.app.state.readiness.ttl == READY_TTL  # type: ignore[attr-defined]


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
        share_answers_for(client, 0)
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


def test_a_shared_answer_stands_until_it_expires(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both parts are cached together: a store that stops answering shows once the shared answer expires."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql)")
    with (
        running_postgres(binaries) as database,
        service(monkeypatch, DATABASE_URL=database.database()) as client,
    ):
        share_answers_for(client, 60)
        first = readiness(client)
        database.stop()
        try:
            shared = readiness(client)
            share_answers_for(client, 0)
            fresh = readiness(client)
        finally:
            database.start()

    assert first == shared == READY
    assert fresh == not_answering("store")
{%- if cookiecutter.delivery == "celery" %}


def test_not_ready_while_the_broker_is_stopped_and_ready_again_when_it_is_back(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queue = f"test-{uuid.uuid4().hex}"  # nothing is sent: no message may reach the test worker's queue
    with (
        running_redis(tmp_path) as server,
        service(monkeypatch, CELERY_BROKER_URL=server.url, CELERY_QUEUE=queue) as client,
    ):
        share_answers_for(client, 0)
        assert readiness(client) == READY
        server.stop()
        try:
            down = client.get("/health/ready")
        finally:
            server.start()
        back = readiness(client)

    assert (down.status_code, down.json()) == not_answering("broker")
    assert str(server.port) not in down.text  # the part's name, never its URL
    assert back == READY


def test_readiness_checks_reuse_one_broker_connection(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """200 probes open at most a couple of connections to Redis, shared answers or not; unshared, each
    one still asks Redis (PING), and a shared answer asks it once."""
    queue = f"test-{uuid.uuid4().hex}"
    with (
        running_redis(tmp_path) as server,
        service(monkeypatch, CELERY_BROKER_URL=server.url, CELERY_QUEUE=queue) as client,
        redis.Redis.from_url(server.url) as observer,
    ):
        opened, pings = connections_and_pings(observer)
        answers = [readiness(client) for _ in range(200)]  # READY_TTL
        share_answers_for(client, 0)
        answers += [readiness(client) for _ in range(200)]
        _, unshared_pings = connections_and_pings(observer)
        share_answers_for(client, 60)
        answers += [readiness(client) for _ in range(200)]
        now_opened, now_pings = connections_and_pings(observer)

    assert answers == [READY] * 600
    assert now_opened - opened <= 2
    assert unshared_pings - pings >= 200
    assert now_pings - unshared_pings <= 1


def connections_and_pings(observer: redis.Redis) -> tuple[int, int]:
    """Connections the Redis server has accepted so far, and PINGs it has answered."""
    opened = int(observer.info("stats")["total_connections_received"])
    pings = int(observer.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
    return opened, pings
{%- endif %}
