"""delivery=celery on a real broker: redis-server, the API (uvicorn), `celery worker` processes, real SMTP.

Every posted notification arrives. A worker killed with SIGKILL while notifications are in flight
loses none: the API's sweeper publishes the notifications it had claimed again once their lease
(DELIVERY_LEASE) has expired, long before Redis's visibility timeout. Duplicates are allowed,
counted and reported; there can be no more than the notifications the killed worker held. A server
that answers the end of DATA later than MAIL_TIMEOUT gives one email per notification; a hung send
killed by the task time limit before its data went out is sent again, once. A broker outage during the POSTs refuses nothing:
what was accepted goes out once the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis

from .conftest import free_port, run_project_tests, wait_until

API_KEY = "template-test-api-key-0123456789"
BEARER = {"Authorization": f"Bearer {API_KEY}"}
SMTP_USER, SMTP_PASSWORD = "mailer", "template-Test-Passw0rd"
CONCURRENCY = 2
LEASE = 5.0
TIME_LIMIT = 43
"""Just above the longest send the MAIL_* settings below allow: 2 attempts of (17 steps + 1 RCPT) x 1 s + 3 s."""
FAST_RECOVERY = {
    "DELIVERY_LEASE": str(LEASE),
    "MAIL_TIMEOUT": "1",
    "MAIL_DATA_TIMEOUT": "3",
    "MAIL_MAX_RETRIES": "0",
    "MAX_RECIPIENTS": "1",
    "CELERY_TASK_TIME_LIMIT": str(TIME_LIMIT),
    "DELIVERY_POLL_INTERVAL": "0.2",
    "DELIVERY_RETRY_BACKOFF": "0.1",
    "DELIVERY_RETRY_BACKOFF_MAX": "0.5",
}


class Inbox:
    """The X-Notification-ID of every message the SMTP server accepted, in order, duplicates included."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._arrived = threading.Condition()

    def store(self, received: Any) -> None:
        with self._arrived:
            self.ids.append(str(received.message["X-Notification-ID"]))
            self._arrived.notify_all()

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float, what: str) -> None:
        with self._arrived:
            if not self._arrived.wait_for(lambda: condition(self.ids), timeout):
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; {len(self.ids)} arrived"
                )


class SlowDataHandler:
    """Stalls the reply to each end of DATA for `delay` s.

    With `hold_next_rcpt`, the next RCPT sets `rcpt_reached` and is answered only once `rcpt_release` is set.
    """

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self.delay = delay
        self.hold_next_rcpt = False
        self.rcpt_reached = threading.Event()
        self.rcpt_release = threading.Event()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.hold_next_rcpt:
            self.hold_next_rcpt = False
            self.rcpt_reached.set()
            while not self.rcpt_release.is_set():
                await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        reply: str = await self._inner.handle_DATA(server, session, envelope)
        return reply


@contextmanager
def redis_server(port: int, folder: Path) -> Iterator[str]:
    """A throwaway redis-server on loopback `port`, without persistence; yields its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed: `apt-get install redis-server` (.ci/run installs it)")
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        wait_until(lambda: _pings(client), 10, "redis-server to accept connections")
        yield url
    finally:
        client.close()
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(free_port(), tmp_path_factory.mktemp("redis")) as url:
        yield url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def devsmtp(celery_project: Path) -> ModuleType:
    """The rendered project's devsmtp.py (aiosmtpd, trustme and the standard library only)."""
    path = next((celery_project / "src").glob("*/devsmtp.py"))
    spec = importlib.util.spec_from_file_location("rendered_devsmtp", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp_handler(devsmtp: ModuleType, inbox: Inbox) -> SlowDataHandler:
    return SlowDataHandler(devsmtp.StoringHandler(inbox.store), delay=0.0)


@pytest.fixture
def environment(
    celery_project: Path, redis_url: str, devsmtp: ModuleType, smtp_handler: SlowDataHandler, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A STARTTLS + AUTH SMTP server feeding `smtp_handler`, and an environment pointing everything at it."""
    ca = devsmtp.load_or_create_ca(tmp_path / "ca")
    controller = devsmtp.start_server(
        smtp_handler,
        tls="starttls",
        tls_context=devsmtp.server_tls_context(ca),
        users={SMTP_USER: SMTP_PASSWORD},
    )
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MAIL_", "API_", "CELERY_", "DELIVERY_", "DATABASE_URL"))
    }
    database = tmp_path / "store.db"
    try:
        variables = {
            **inherited,
            "PYTHONPATH": str(celery_project / "src"),
            "API_KEYS": API_KEY,
            "MAIL_SERVER": "localhost",
            "MAIL_PORT": str(controller.port),
            "MAIL_USERNAME": SMTP_USER,
            "MAIL_PASSWORD": SMTP_PASSWORD,
            "MAIL_FROM": "noreply@example.com",
            "MAIL_CERT_BUNDLE": str(tmp_path / "ca" / "ca.pem"),
            "CELERY_BROKER_URL": redis_url,
            "CELERY_QUEUE": f"test-{uuid.uuid4().hex}",
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            **FAST_RECOVERY,
        }
        command = [sys.executable, "-m", package(celery_project), "migrate"]
        subprocess.run(command, env=variables, cwd=tmp_path, check=True, capture_output=True, timeout=60)
        yield variables
    finally:
        controller.stop()


def claimed(environment: dict[str, str]) -> int:
    """How many notifications are `sending` (claimed by a worker) in the store."""
    path = environment["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        [(count,)] = connection.execute("SELECT count(*) FROM notifications WHERE status = 'sending'")
    return int(count)


@contextmanager
def running(command: list[str], environment: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in a process group of its own; kill the whole group afterwards, whatever happened."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def package(project: Path) -> str:
    return next(path.name for path in (project / "src").iterdir() if (path / "worker.py").exists())


@contextmanager
def api(project: Path, environment: dict[str, str], tmp_path: Path) -> Iterator[httpx.Client]:
    """The service under uvicorn, ready to take requests."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", f"{package(project)}.main:app", "--port", str(port)]
    with (
        running([*command, "--log-level", "warning"], environment, tmp_path / "api.log") as process,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        wait_until(lambda: _healthy(client, process), 30, "the API to answer /health")
        yield client


def _healthy(client: httpx.Client, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the API exited; see api.log"
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def worker(
    project: Path, environment: dict[str, str], log: Path, concurrency: int = CONCURRENCY
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A `celery worker` process (prefork pool) as a context manager."""
    command = [sys.executable, "-m", "celery", "-A", f"{package(project)}.worker", "worker"]
    options = [
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
    ]
    return running([*command, *options, "--hostname", f"{log.stem}@%h"], environment, log)


def post(client: httpx.Client, count: int) -> list[str]:
    """POST `count` notifications; return their ids."""
    ids = []
    for number in range(count):
        body = {"to": ["alice@example.com"], "subject": f"Notification {number}", "body": "Hello."}
        response = client.post("/notifications", json=body, headers=BEARER)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def test_every_posted_notification_arrives_once(
    celery_project: Path, environment: dict[str, str], inbox: Inbox, tmp_path: Path
) -> None:
    with (
        api(celery_project, environment, tmp_path) as client,
        worker(celery_project, environment, tmp_path / "w1.log"),
    ):
        posted = post(client, 30)
        inbox.wait_for(lambda ids: set(posted) <= set(ids), 30, "all 30 notifications")

    assert sorted(inbox.ids) == sorted(posted)


def test_worker_killed_mid_flight_loses_nothing(
    celery_project: Path,
    environment: dict[str, str],
    inbox: Inbox,
    smtp_handler: SlowDataHandler,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    smtp_handler.delay = 0.2  # a slow server: 0.2 s per message
    with api(celery_project, environment, tmp_path) as client:
        posted = post(client, 200)
        with worker(celery_project, environment, tmp_path / "w1.log") as first:
            inbox.wait_for(lambda ids: len(ids) >= 10, 60, "the first worker to send 10")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        delivered_before_kill = len(inbox.ids)
        held_by_dead_worker = claimed(environment)
        assert delivered_before_kill < len(posted), "the worker was killed after it had finished"
        assert held_by_dead_worker >= 1, "nothing was in flight when the worker died"

        started = time.monotonic()
        with worker(celery_project, environment, tmp_path / "w2.log"):
            # 0.2 s a message over CONCURRENCY sessions, plus one lease for the dead worker's claims
            budget = LEASE + 0.2 * len(posted) / CONCURRENCY + 30
            inbox.wait_for(
                lambda ids: set(posted) <= set(ids), budget, "every notification after the restart"
            )
        recovery = time.monotonic() - started

    duplicates = sum(count - 1 for count in Counter(inbox.ids).values())
    with capsys.disabled():
        print(
            f"\nkill test: {len(posted)} posted; {delivered_before_kill} delivered before SIGKILL, "
            f"{held_by_dead_worker} claimed at the kill; all {len(set(inbox.ids))} delivered "
            f"{recovery:.1f} s after the restart; {duplicates} duplicate(s)"
        )
    assert set(inbox.ids) == set(posted)
    assert duplicates <= held_by_dead_worker


def test_broker_outage_during_the_posts_refuses_and_loses_nothing(
    celery_project: Path, environment: dict[str, str], inbox: Inbox, tmp_path: Path
) -> None:
    port = free_port()
    environment = {**environment, "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    with api(celery_project, environment, tmp_path) as client:
        with redis_server(port, tmp_path):
            before = post(client, 10)
        during = post(client, 10)  # the broker is down: still 202, kept in the store
        with redis_server(port, tmp_path), worker(celery_project, environment, tmp_path / "w1.log"):
            after = post(client, 10)
            posted = before + during + after
            inbox.wait_for(
                lambda ids: set(posted) <= set(ids), 60, "every notification once the broker is back"
            )

    assert sorted(inbox.ids) == sorted(posted)


def test_a_late_reply_to_the_end_of_data_gives_one_email_each(
    celery_project: Path,
    environment: dict[str, str],
    inbox: Inbox,
    smtp_handler: SlowDataHandler,
    tmp_path: Path,
) -> None:
    smtp_handler.delay = 2.0  # later than MAIL_TIMEOUT (1 s), within MAIL_DATA_TIMEOUT (3 s)
    with (
        api(celery_project, environment, tmp_path) as client,
        worker(celery_project, environment, tmp_path / "w1.log"),
    ):
        posted = post(client, 3)
        inbox.wait_for(lambda ids: set(posted) <= set(ids), 60, "the 3 notifications")
        time.sleep(2 * LEASE)  # a second claim or a retry would have sent another copy by now
        statuses = [client.get(f"/notifications/{id_}", headers=BEARER).json()["status"] for id_ in posted]

    assert sorted(inbox.ids) == sorted(posted)
    assert statuses == ["sent"] * 3


def test_a_hung_send_killed_by_the_time_limit_is_sent_again(
    celery_project: Path,
    environment: dict[str, str],
    inbox: Inbox,
    smtp_handler: SlowDataHandler,
    tmp_path: Path,
) -> None:
    # The worker process hangs (stopped) while it waits for the reply to RCPT, before any data went out.
    smtp_handler.hold_next_rcpt = True
    log = tmp_path / "w1.log"
    with (
        api(celery_project, environment, tmp_path) as client,
        worker(celery_project, environment, log, concurrency=1) as process,
    ):
        [notification_id] = post(client, 1)
        assert smtp_handler.rcpt_reached.wait(30), "the send never reached RCPT"
        [child] = pool_processes(process.pid)
        os.kill(child, signal.SIGSTOP)
        smtp_handler.rcpt_release.set()
        inbox.wait_for(lambda ids: notification_id in ids, TIME_LIMIT + 30, "the notification, sent again")
        time.sleep(LEASE)

    assert inbox.ids == [notification_id]
    assert f"Hard time limit ({TIME_LIMIT}s) exceeded" in log.read_text()


def pool_processes(parent: int) -> list[int]:
    """The ids of the processes whose parent is `parent` (a prefork worker's pool)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                children.append(int(stat.parent.name))
    return children


def test_generated_integration_test_passes_on_the_real_broker(celery_project: Path, redis_url: str) -> None:
    result = run_project_tests(
        celery_project, "tests/test_worker_redis.py", env={"CELERY_BROKER_URL": redis_url}
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
