"""Queued delivery: the API publishes, a real Celery worker sends to a real SMTP server.

The broker is Celery's in-memory transport (see celery_worker.py); test_worker_redis.py runs
the same path against a real broker.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.delivery.celery_app import TASK_NAME, CelerySettings
from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.mail import MailSettings, SettingsError, load_settings
from {{ cookiecutter.package_name }}.mail.core.session import longest_send
from {{ cookiecutter.package_name }}.settings import RecipientLimit
from {{ cookiecutter.package_name }}.store import StoreSettings
from {{ cookiecutter.package_name }}.worker import check_limits, start_dev_worker

from .celery_worker import MEMORY_BROKER, QUEUE, TaskTracker, worker_command, worker_environment
from .conftest import auth, migrate, service
from .smtp_server import SmtpServer

NOTIFICATION = {"to": ["alice@example.com"], "subject": "Queued", "body": "Sent by a worker."}
BROKER_PASSWORD = "Broker-Pa55word-never-shown"


def post(client: TestClient) -> str:
    """POST one notification; return its id."""
    response = client.post("/notifications", json=NOTIFICATION, headers=auth())
    assert response.status_code == 202
    return str(response.json()["id"])


def delivered_ids(server: SmtpServer) -> list[str]:
    return [str(received.message["X-Notification-ID"]) for received in server.received]


def test_a_repeated_message_sends_nothing_twice(
    client: TestClient, smtp_server: SmtpServer, celery_tasks: TaskTracker, celery_worker: Celery
) -> None:
    notification_id = post(client)
    smtp_server.handler.wait_for(1)
    celery_tasks.wait_idle()

    # The broker hands the same message out again (a redelivery, a sweeper's republish).
    celery_worker.send_task(TASK_NAME, args=(notification_id,), queue=QUEUE)
    celery_tasks.wait_idle()

    assert delivered_ids(smtp_server) == [notification_id]
    assert client.get(f"/notifications/{notification_id}", headers=auth()).json()["status"] == "sent"


def test_broker_outage_still_answers_202_and_the_sweeper_publishes_later(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker = f"redis://:{BROKER_PASSWORD}@127.0.0.1:{free_port()}/0"
    with service(monkeypatch, CELERY_BROKER_URL=broker) as client:
        response = client.post("/notifications", json=NOTIFICATION, headers=auth())
        notification_id = response.json()["id"]
        deadline = time.monotonic() + 20
        while "broker unavailable" not in caplog.text:
            assert time.monotonic() < deadline, "the publish to the unreachable broker never failed"
            time.sleep(0.05)
        queued = client.get(f"/notifications/{notification_id}", headers=auth()).json()

    assert response.status_code == 202
    assert queued["status"] == "queued"
    assert "broker unavailable" in caplog.text
    assert BROKER_PASSWORD not in response.text + caplog.text
    assert smtp_server.received == []

    # The broker is back: the next service's sweeper publishes what is due.
    with service(monkeypatch, CELERY_BROKER_URL=MEMORY_BROKER) as client:
        smtp_server.handler.wait_for(1)
    assert delivered_ids(smtp_server) == [notification_id]


def limits(**variables: str) -> tuple[CelerySettings, MailSettings, int]:
    """The settings `check_limits` compares, from a mail server's variables plus `variables`."""
    mail = {"MAIL_SERVER": "smtp.example.com", "MAIL_PORT": "587", "MAIL_FROM": "noreply@example.com"}
    mail.update(MAIL_USE_CREDENTIALS="false")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**mail, **variables}.items():
            patch.setenv(name, value)
        return (
            load_settings(CelerySettings),
            load_settings(MailSettings),
            load_settings(RecipientLimit).max_recipients,
        )


def test_the_default_time_limit_outlasts_the_longest_default_send() -> None:
    celery, mail, recipients = limits()

    check_limits(celery, mail, recipients)  # raises nothing
    # 5 attempts of (17 steps + 50 RCPTs) x 10 s + 600 s for the end of DATA, and 5.25 s of backoff
    assert longest_send(mail, recipients) == 6355.25
    assert celery.task_time_limit > 6356
    assert celery.visibility_timeout > celery.task_time_limit


@pytest.mark.parametrize(
    "variables",
    [
        {"CELERY_TASK_TIME_LIMIT": "6356"},  # the bound itself: a send may use all of it
        {"MAIL_DATA_TIMEOUT": "1800", "CELERY_VISIBILITY_TIMEOUT": "86400"},
        {"MAX_RECIPIENTS": "200"},
        {"MAIL_TIMEOUT": "30"},
        {"MAIL_MAX_RETRIES": "6"},
    ],
)
def test_a_time_limit_that_could_cut_off_the_end_of_data_stops_the_worker(variables: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as raised:
        check_limits(*limits(**variables))

    message = str(raised.value)
    assert message.startswith("invalid settings: CELERY_TASK_TIME_LIMIT (")
    assert "MAIL_DATA_TIMEOUT" in message
    assert "raise CELERY_TASK_TIME_LIMIT above" in message
    assert "\n" not in message


def test_a_short_time_limit_is_fine_for_short_mail_timeouts() -> None:
    variables = {
        "MAIL_TIMEOUT": "0.5",
        "MAIL_DATA_TIMEOUT": "3",
        "MAIL_MAX_RETRIES": "0",
        "MAX_RECIPIENTS": "1",
    }
    celery, mail, recipients = limits(CELERY_TASK_TIME_LIMIT="25", **variables)
    assert longest_send(mail, recipients) == 2 * (18 * 0.5 + 3)

    check_limits(celery, mail, recipients)  # 25 s > 24 s: raises nothing
    with pytest.raises(SettingsError, match=r"CELERY_TASK_TIME_LIMIT \(24 s\) must exceed .* \(24 s"):
        check_limits(*limits(CELERY_TASK_TIME_LIMIT="24", **variables))


def test_redis_must_not_hand_out_a_message_before_the_time_limit() -> None:
    with pytest.raises(SettingsError) as raised:
        check_limits(
            *limits(CELERY_VISIBILITY_TIMEOUT="7200", CELERY_BROKER_URL="redis://redis.internal:6379/0")
        )

    message = str(raised.value)
    assert message == (
        "invalid settings: CELERY_VISIBILITY_TIMEOUT (7200 s) must exceed CELERY_TASK_TIME_LIMIT (7200 s), "
        "or Redis hands a message waiting behind a running send to a second worker: raise CELERY_VISIBILITY_TIMEOUT"
    )
    # RabbitMQ has no visibility timeout: a message comes back when its worker's connection closes.
    check_limits(*limits(CELERY_VISIBILITY_TIMEOUT="7200", CELERY_BROKER_URL="amqp://rabbitmq.internal//"))


def test_broker_password_stays_out_of_errors_and_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = f"amqp://notifier:{BROKER_PASSWORD}@rabbitmq.internal:5672//"
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "many")

    with pytest.raises(SettingsError) as raised:
        load_settings(CelerySettings)
    assert "CELERY_TASK_TIME_LIMIT" in str(raised.value)
    assert BROKER_PASSWORD not in str(raised.value)

    monkeypatch.delenv("CELERY_TASK_TIME_LIMIT")
    settings = load_settings(CelerySettings)
    assert settings.broker_url.get_secret_value() == broker
    assert BROKER_PASSWORD not in repr(settings) + str(settings)


def test_dev_worker_delivers_without_a_broker(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_QUEUE", "dev")  # its own queue, away from the suite's worker
    migrate(StoreSettings().database_url)  # as `make dev` does before it starts the worker
    stop = start_dev_worker()
    try:
        with service(monkeypatch) as client:
            notification_id = post(client)
        smtp_server.handler.wait_for(1)
    finally:
        stop()

    assert delivered_ids(smtp_server) == [notification_id]


def start_worker(environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a solo-pool worker that is expected to stop at start; returns how it ended."""
    return subprocess.run(
        worker_command("--pool", "solo"),
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_with_bad_mail_settings_stops_at_start_with_one_line(tmp_path: Path) -> None:
    environment = worker_environment(CELERY_BROKER_URL="memory://localhost/", MAIL_PASSWORD="Mail-Pa55word")

    completed = start_worker(environment, tmp_path)

    assert completed.returncode == 2
    assert completed.stderr.splitlines()[-1].startswith("error: invalid settings: MAIL_SERVER is required")
    assert "Traceback" not in completed.stderr
    assert "Mail-Pa55word" not in completed.stdout + completed.stderr


def test_worker_with_a_time_limit_below_the_longest_send_stops_at_start_with_one_line(tmp_path: Path) -> None:
    environment = worker_environment(
        CELERY_BROKER_URL="memory://localhost/",
        CELERY_TASK_TIME_LIMIT="45",  # the old default: it cut off a server answering the end of DATA late
        MAIL_SERVER="smtp.example.com",
        MAIL_PORT="587",
        MAIL_FROM="noreply@example.com",
        MAIL_USE_CREDENTIALS="false",
    )

    completed = start_worker(environment, tmp_path)

    assert completed.returncode == 2
    last = completed.stderr.splitlines()[-1]
    assert last.startswith(
        "error: invalid settings: CELERY_TASK_TIME_LIMIT (45 s) must exceed the longest send"
    )
    assert "raise CELERY_TASK_TIME_LIMIT above 6356" in last
    assert "Traceback" not in completed.stderr


def test_a_direct_celery_settings_load_hides_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "redis://:broker-secret@host")

    with pytest.raises(ValidationError) as raised:
        CelerySettings()

    assert "broker-secret" not in str(raised.value)
