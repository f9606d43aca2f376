"""The whole path on a real broker: API -> broker -> `celery worker` process -> SMTP server.

Runs when CELERY_BROKER_URL names a reachable broker, e.g.
`CELERY_BROKER_URL=redis://localhost:6379/0 make test`; skipped otherwise. It uses a queue of
its own, so a broker shared with a running deployment is safe.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError

from {{ cookiecutter.package_name }}.store import StoreSettings

from .celery_worker import worker_command, worker_environment
from .conftest import auth, migrate, service
from .smtp_server import SmtpServer

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")  # read before the fixtures clear CELERY_*
NOTIFICATIONS = 10


def broker_reachable(url: str) -> bool:
    """True when `url` is a network broker that accepts a connection now."""
    if not url or url.startswith("memory://"):
        return False
    try:
        with Celery(broker=url, set_as_current=False).connection_for_write(connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except (OperationalError, OSError):
        return False
    return True


pytestmark = pytest.mark.skipif(
    not broker_reachable(BROKER_URL), reason="set CELERY_BROKER_URL to a reachable broker to run"
)


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    with Celery(broker=BROKER_URL, set_as_current=False).connection_for_write() as connection:
        Queue(name).bind(connection.default_channel).delete()


@pytest.fixture
def worker(smtp_server: SmtpServer, queue: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`celery worker` (prefork, 2 processes) on `queue`, sending to `smtp_server`; stopped warmly afterwards."""
    migrate(StoreSettings().database_url)  # the service and the worker share the store (this test's folder)
    environment = worker_environment(CELERY_BROKER_URL=BROKER_URL, CELERY_QUEUE=queue)
    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            worker_command("--concurrency", "2", "--without-mingle", "--without-gossip"),
            env=environment,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_notification_travels_through_the_broker_and_arrives_once(
    smtp_server: SmtpServer, worker: subprocess.Popen[bytes], queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, CELERY_BROKER_URL=BROKER_URL, CELERY_QUEUE=queue) as client:
        responses = [
            client.post(
                "/notifications", json={"to": ["a@example.com"], "subject": "s", "body": "b"}, headers=auth()
            )
            for _ in range(NOTIFICATIONS)
        ]
    assert [response.status_code for response in responses] == [202] * NOTIFICATIONS

    smtp_server.handler.wait_for(NOTIFICATIONS, timeout=30)
    worker.terminate()  # a warm shutdown: whatever it was still doing, it finishes
    assert worker.wait(timeout=20) == 0
    assert sorted(str(item.message["X-Notification-ID"]) for item in smtp_server.received) == sorted(
        response.json()["id"] for response in responses
    )
