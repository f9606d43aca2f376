"""MAIL_RATE_LIMIT holds for every sending process together: what a real SMTP server receives, over time.

At a small scale (10 messages per 4 seconds, 40 posted at once) so that it runs in seconds; the limit is
counted where the processes share it{% if cookiecutter.delivery == "celery" %} (Redis, the broker){% else %} (the store's database){% endif %}.
"""

from __future__ import annotations

{% if cookiecutter.delivery == "celery" -%}
import subprocess
import uuid
{% endif -%}
from pathlib import Path

import httpx
import pytest

{% if cookiecutter.delivery == "celery" -%}
from .celery_worker import running_redis, worker_command, worker_environment
{% endif -%}
from .conftest import auth, migrate{% if cookiecutter.delivery == "celery" %}, service{% endif %}
from .service_process import ServiceProcess
from .smtp_server import SmtpServer

LIMIT, PERIOD, POSTED = 10, 4, 40
ARRIVAL_SLACK = 0.5
"""Seconds a message may take from its admission to the server beyond the one admitted a period before it."""


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


{% if cookiecutter.delivery == "celery" -%}
def test_two_api_processes_and_two_workers_keep_together_under_the_rate_limit(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(database_url)
    with running_redis(tmp_path) as broker:
        queue = f"test-{uuid.uuid4().hex}"
        variables = {
            "CELERY_BROKER_URL": broker,
            "CELERY_QUEUE": queue,
            "MAIL_RATE_LIMIT": f"{LIMIT}/{PERIOD}second",
            "DELIVERY_POLL_INTERVAL": "0.2",
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        with (tmp_path / "workers.log").open("wb") as log:
            workers = [
                subprocess.Popen(
                    worker_command(
                        "--concurrency", "1", "--without-mingle", "--without-gossip", "-n", f"w{index}@%h"
                    ),
                    env=worker_environment(),
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                for index in range(2)
            ]
        try:
            with ServiceProcess(tmp_path / "service.log", workers=2) as api:
                ids = post_all(api.url)
                received = smtp_server.handler.wait_for(POSTED, timeout=POSTED / LIMIT * PERIOD + 30)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=20)
{%- else -%}
def test_two_api_processes_keep_together_under_the_rate_limit(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(database_url)
    monkeypatch.setenv("MAIL_RATE_LIMIT", f"{LIMIT}/{PERIOD}second")
    with ServiceProcess(tmp_path / "service.log", workers=2) as api:
        ids = post_all(api.url)
        received = smtp_server.handler.wait_for(POSTED, timeout=POSTED / LIMIT * PERIOD + 30)
{%- endif %}

    assert sorted(str(each.message["X-Notification-ID"]) for each in received) == sorted(ids)  # each once
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
