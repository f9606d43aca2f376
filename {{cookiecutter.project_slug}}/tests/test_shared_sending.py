"""MAIL_RATE_LIMIT holds for every sending process together, and a sending process killed midway (SIGKILL) loses
nothing and does not let the total overtake it: what a real SMTP server receives, over time.

At a small scale (10 messages per 4 seconds, 40 posted at once, a 2-second DELIVERY_LEASE) so that it runs in
seconds; the limit is counted where the processes share it{% if cookiecutter.delivery == "celery" %} (Redis, the broker){% else %} (the store's database){% endif %}.
"""

from __future__ import annotations

import asyncio
import os
import signal
{% if cookiecutter.delivery == "celery" -%}
import subprocess
{% endif -%}
import time
{% if cookiecutter.delivery == "celery" -%}
import uuid
{% endif -%}
from collections import Counter
from pathlib import Path

import httpx
{% if cookiecutter.delivery == "celery" -%}
import pytest
{% endif %}
from {{ cookiecutter.package_name }}.store import NotificationRecord, NotificationStore, Status, open_engine

{% if cookiecutter.delivery == "celery" -%}
from .celery_worker import running_redis, worker_command, worker_environment
{% endif -%}
from .conftest import auth, migrate{% if cookiecutter.delivery == "celery" %}, service{% endif %}
from .service_process import ServiceProcess
from .smtp_server import SmtpServer

LIMIT, PERIOD, POSTED = 10, 4, 40
ARRIVAL_SLACK = 0.5
"""Seconds a message may take from its admission to the server beyond the one admitted a period before it."""
SEND_TIME = 0.5
"""Seconds the server holds each end of DATA: the senders could go faster than the limit, but a kill finds them
mid-send."""
KILL_AFTER = 15
"""Messages arrived before a sending process is killed (midway)."""
{% if cookiecutter.delivery == "celery" -%}
HELD_BY_BOTH = 2
"""Messages held at the end of DATA that mean both workers (one send each at a time) are mid-send."""
{%- else -%}
HELD_BY_BOTH = 3
"""Messages held at the end of DATA that mean both uvicorn workers (DELIVERY_CONCURRENCY=2 each) are mid-send."""
{%- endif %}
SETTINGS = {
    "MAIL_RATE_LIMIT": f"{LIMIT}/{PERIOD}second",
    "DELIVERY_LEASE": "2",
    "DELIVERY_POLL_INTERVAL": "0.2",
    "DELIVERY_CONCURRENCY": "2",
    "MAIL_POOL_SIZE": "2",
}


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The most of `times` that fall in any stretch of `seconds`."""
    ordered = sorted(times)
    return max(
        sum(1 for other in ordered[index:] if other < start + seconds) for index, start in enumerate(ordered)
    )


def post_all(url: str) -> list[str]:
    with httpx.Client(base_url=url, headers=auth(), timeout=10) as client:
        return [
            client.post(
                "/notifications",
                json={
                    "to": [f"user{index}@example.com"],
                    "subject": f"#{index}",
                    "body": "b",
                    "format": "text",
                },
            ).json()["id"]
            for index in range(POSTED)
        ]


def records(database_url: str, ids: list[str]) -> dict[str, NotificationRecord]:
    """The stored records of `ids`."""

    async def get() -> dict[str, NotificationRecord]:
        store = NotificationStore(open_engine(database_url))
        try:
            found = {each: await store.get(each) for each in ids}
        finally:
            await store.aclose()
        return {key: record for key, record in found.items() if record is not None}

    return asyncio.run(get())


def wait_until_sent(smtp_server: SmtpServer, database_url: str, ids: list[str], timeout: float) -> None:
    """Block until every one of `ids` arrived at `smtp_server` and is recorded as sent."""
    deadline = time.monotonic() + timeout
    while True:
        arrived = {str(each.message["X-Notification-ID"]) for each in smtp_server.received}
        if arrived >= set(ids) and {r.status for r in records(database_url, ids).values()} == {Status.SENT}:
            return
        assert time.monotonic() < deadline, f"{len(arrived & set(ids))} of {len(ids)} arrived"
        time.sleep(0.5)


{% if cookiecutter.delivery == "celery" -%}
def start_worker(name: str, log: Path, folder: Path) -> subprocess.Popen[bytes]:
    """A `celery worker` (one send at a time) in a session of its own: killing the session kills its pool too."""
    with log.open("ab") as output:
        return subprocess.Popen(
            worker_command("--concurrency", "1", "--without-mingle", "--without-gossip", "-n", f"{name}@%h"),
            env=worker_environment(),
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_two_api_processes_and_two_workers_keep_under_the_rate_limit_and_lose_nothing_when_one_is_killed(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    smtp_server.handler.delay = SEND_TIME
    migrate(database_url)
    with running_redis(tmp_path) as broker:
        variables = {**SETTINGS, "CELERY_BROKER_URL": broker, "CELERY_QUEUE": f"test-{uuid.uuid4().hex}"}
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        log = tmp_path / "workers.log"
        workers = [start_worker(f"w{index}", log, tmp_path) for index in range(2)]
        try:
            with ServiceProcess(tmp_path / "service.log", workers=2) as api:
                ids = post_all(api.url)
                smtp_server.handler.wait_for(KILL_AFTER, timeout=POSTED / LIMIT * PERIOD + 30)
                smtp_server.handler.wait_held(HELD_BY_BOTH, timeout=4 * PERIOD)
                os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and its pool process, mid-send
                workers[0].wait(10)
                cut_off = {key for key, r in records(database_url, ids).items() if r.status == Status.SENDING}
                workers.append(start_worker("w2", log, tmp_path))  # its replacement
                wait_until_sent(smtp_server, database_url, ids, timeout=POSTED / LIMIT * PERIOD + 40)
        finally:
            for worker in workers[1:]:
                worker.terminate()
            for worker in workers[1:]:
                worker.wait(timeout=20)
{%- else -%}
def uvicorn_workers(supervisor: int) -> list[int]:
    """The pids of the worker processes uvicorn's `supervisor` runs (read from Linux's /proc)."""
    workers = []
    for entry in Path("/proc").iterdir():
        try:
            stat, command = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or one that ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # "pid (name) state ppid ..."
        if parent == supervisor and b"spawn_main" in command:
            workers.append(int(entry.name))
    return workers


def test_two_api_processes_keep_under_the_rate_limit_and_lose_nothing_when_one_is_killed(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.delay = SEND_TIME
    migrate(database_url)
    with ServiceProcess(tmp_path / "service.log", workers=2, **SETTINGS) as api:
        ids = post_all(api.url)
        smtp_server.handler.wait_for(KILL_AFTER, timeout=POSTED / LIMIT * PERIOD + 30)
        smtp_server.handler.wait_held(HELD_BY_BOTH, timeout=4 * PERIOD)
        assert api.process is not None
        victim = uvicorn_workers(api.process.pid)[0]
        os.kill(victim, signal.SIGKILL)  # mid-send; uvicorn starts a replacement
        cut_off = {key for key, r in records(database_url, ids).items() if r.status == Status.SENDING}
        wait_until_sent(smtp_server, database_url, ids, timeout=POSTED / LIMIT * PERIOD + 40)
{%- endif %}

    stored = records(database_url, ids)
    copies = Counter(str(each.message["X-Notification-ID"]) for each in smtp_server.received)
    # Claimed by the killed process and claimed again after its lease: a claim counts as an attempt, its
    # outcome never recorded.
    reclaimed = {key for key, r in stored.items() if r.attempt_count > len(r.attempts)}
    twice = {key for key, count in copies.items() if count > 1}
    assert set(copies) == set(ids)  # none lost
    assert reclaimed, "the kill cut off no send"
    assert reclaimed <= cut_off
    # Only a send the kill cut off after its end of DATA went out is sent again, once, and its record says so.
    assert twice <= reclaimed
    assert max(copies.values()) <= 2
    assert most_in_any_window(smtp_server.handler.arrived, PERIOD - ARRIVAL_SLACK) <= LIMIT
{%- if cookiecutter.delivery == "celery" %}


def test_a_high_notification_published_behind_300_low_ones_is_taken_first(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(database_url)
    low = {"to": ["low@example.com"], "subject": "Digest", "body": "b", "format": "text", "priority": "low"}
    with running_redis(tmp_path) as broker:
        monkeypatch.setenv("CELERY_BROKER_URL", broker)
        monkeypatch.setenv("CELERY_QUEUE", f"test-{uuid.uuid4().hex}")
        with service(monkeypatch) as client:  # every message is in the broker once the service has stopped
            for _ in range(300):
                client.post("/notifications", json=low, headers=auth())
            high = {**low, "to": ["high@example.com"], "subject": "Password reset", "priority": "high"}
            client.post("/notifications", json=high, headers=auth())
        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                worker_command("--concurrency", "1", "--without-mingle", "--without-gossip"),
                env=worker_environment(),
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            received = smtp_server.handler.wait_for(5, timeout=30)
        finally:
            worker.terminate()
            worker.wait(timeout=20)

    assert [list(each.recipients) for each in received[:5]].index(["high@example.com"]) < 2
{%- endif %}
