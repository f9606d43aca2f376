"""Celery for the test suite, with no broker to install: Celery's in-memory transport and a real worker.

One worker thread runs for the whole session (a Celery worker takes seconds to stop). Each test
publishes to it through the service as usual (CELERY_BROKER_URL=memory://localhost/), its first
send reads that test's MAIL_* settings, and its end waits until every message it queued has been
run to an end, so nothing leaks into the next test. conftest.py imports the fixtures.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import after_task_publish, task_postrun
from pydantic import SecretStr

from {{ cookiecutter.package_name }} import worker
from {{ cookiecutter.package_name }}.delivery.celery_app import CelerySettings, create_celery_app
from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.store import StoreSettings, open_engine, upgrade
from {{ cookiecutter.package_name }}.worker import RUNTIME, register_tasks

MEMORY_BROKER = "memory://localhost/"
QUEUE = "notifications"
SOURCE = str(Path(worker.__file__).parents[1])
STARTUP_MAIL_ENV = {
    "MAIL_SERVER": "localhost",
    "MAIL_PORT": "25",
    "MAIL_FROM": "noreply@example.com",
    "MAIL_USE_CREDENTIALS": "false",
}


class TaskTracker:
    """Messages published to the test queue and task runs finished, recorded from Celery's signals."""

    def __init__(self) -> None:
        self.states: dict[str, list[str]] = {}
        """Task (notification) id -> the state each of its runs ended in: SUCCESS, FAILURE..."""
        self._published = 0
        self._finished = 0
        self._changed = threading.Condition()

    def on_publish(self, routing_key: str = "", **_: Any) -> None:
        if routing_key == QUEUE:
            with self._changed:
                self._published += 1
                self._changed.notify_all()

    def on_finish(self, task_id: str = "", state: str = "", **_: Any) -> None:
        with self._changed:
            self._finished += 1
            self.states.setdefault(task_id, []).append(state)
            self._changed.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every published message has been run to an end, retries included."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._finished >= self._published, timeout):
                pending = self._published - self._finished
                raise AssertionError(f"{pending} queued message(s) never finished within {timeout} s")


def worker_command(*options: str) -> list[str]:
    """`celery -A <package>.worker worker <options>` run by this interpreter."""
    return [sys.executable, "-m", "celery", "-A", worker.__name__, "worker", *options]


def worker_environment(**variables: str) -> dict[str, str]:
    """This environment plus `variables`, with the package importable from any working directory."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")]),
        **variables,
    }


@contextmanager
def running_redis(folder: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, without persistence; yields its URL.
    Skips the test, saying why, when redis-server is not installed."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)")
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (folder / "redis.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                log_tail = (folder / "redis.log").read_text()[-500:]
                raise AssertionError(f"redis-server did not start: {log_tail}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _redis_answers(url: str) -> bool:
    try:
        with Celery(broker=url, set_as_current=False).connection_for_write(connect_timeout=1) as connection:
            connection.ensure_connection(max_retries=0, timeout=1)
    except Exception:  # not up yet
        return False
    return True


async def migrate_startup_store() -> None:
    engine = open_engine(StoreSettings().database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def celery_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Celery]:
    """A real worker thread (solo pool) consuming the in-memory broker, for the whole session."""
    app = register_tasks(create_celery_app(CelerySettings(broker_url=SecretStr(MEMORY_BROKER), queue=QUEUE)))
    app.conf.broker_transport_options["polling_interval"] = 0.01
    # CELERY_BROKER_URL in the environment would override broker_url (Celery reads it on every
    # connection); the explicit read and write URLs keep this worker on the memory broker.
    app.conf.update(broker_read_url=MEMORY_BROKER, broker_write_url=MEMORY_BROKER)
    with ExitStack() as stack:
        # The worker checks the MAIL_* settings as it starts; each test's first send reads that test's own.
        with pytest.MonkeyPatch.context() as patch:
            folder = tmp_path_factory.mktemp("worker")
            patch.chdir(folder)  # away from the developer's .env
            for name, value in STARTUP_MAIL_ENV.items():
                patch.setenv(name, value)
            # The worker also checks that the store is migrated; each test's first send opens that test's own.
            patch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{folder / 'startup.db'}")
            asyncio.run(migrate_startup_store())
            worker = stack.enter_context(start_worker(app, perform_ping_check=False, shutdown_timeout=10))
        yield app
        # Told over the broker, the worker stops at once instead of after two 2-second polls.
        app.control.shutdown(destination=[worker.hostname])  # type: ignore[attr-defined]  # celery-types lacks it


@pytest.fixture(autouse=True)
def celery_tasks(
    isolated_environment: None, celery_worker: Celery, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TaskTracker]:
    """Point the service at the worker; afterwards wait for what the test queued and close its SMTP pool."""
    monkeypatch.setenv("CELERY_BROKER_URL", MEMORY_BROKER)
    monkeypatch.setenv("DELIVERY_POLL_INTERVAL", "0.1")  # the service's sweeper publishes retries soon
    tracker = TaskTracker()
    after_task_publish.connect(tracker.on_publish)
    task_postrun.connect(tracker.on_finish)
    try:
        yield tracker
        tracker.wait_idle()
    finally:
        after_task_publish.disconnect(tracker.on_publish)
        task_postrun.disconnect(tracker.on_finish)
        RUNTIME.close()
