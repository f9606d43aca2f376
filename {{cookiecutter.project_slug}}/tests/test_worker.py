"""Queued delivery: the API publishes, a real Celery worker sends to a real SMTP server.

The broker is Celery's in-memory transport (see celery_worker.py); test_worker_redis.py runs
the same path against a real broker.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.mail import SettingsError, load_settings
from {{ cookiecutter.package_name }}.worker import CelerySettings, start_dev_worker

from .celery_worker import MAX_RETRIES, TaskTracker, worker_command, worker_environment
from .conftest import auth, service
from .smtp_server import SmtpServer

NOTIFICATION = {"to": ["alice@example.com"], "subject": "Queued", "body": "Sent by a worker."}
TRANSIENT = "451 4.3.0 try again later"
PERMANENT = "550 5.7.1 message refused"
BROKER_PASSWORD = "Broker-Pa55word-never-shown"


def post(client: TestClient) -> str:
    """POST one notification; return its id."""
    response = client.post("/notifications", json=NOTIFICATION, headers=auth())
    assert response.status_code == 202
    return str(response.json()["id"])


def delivered_ids(server: SmtpServer) -> list[str]:
    return [str(received.message["X-Notification-ID"]) for received in server.received]


@pytest.fixture
def queue_retries_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's Mailer gives up at the first failure, so every retry goes through the queue."""
    monkeypatch.setenv("MAIL_MAX_RETRIES", "0")


def test_posted_notifications_are_queued_and_each_arrives_once(
    client: TestClient, smtp_server: SmtpServer, celery_tasks: TaskTracker
) -> None:
    ids = [post(client) for _ in range(5)]

    celery_tasks.wait_idle()
    assert sorted(delivered_ids(smtp_server)) == sorted(ids)
    assert [celery_tasks.states[notification_id] for notification_id in ids] == [["SUCCESS"]] * 5


@pytest.mark.usefixtures("queue_retries_only")
def test_transient_failures_are_retried_through_the_queue_and_delivered_once(
    client: TestClient, smtp_server: SmtpServer, celery_tasks: TaskTracker
) -> None:
    smtp_server.handler.data_replies.extend([TRANSIENT] * MAX_RETRIES)

    notification_id = post(client)

    assert celery_tasks.wait_final(notification_id) == ["RETRY"] * MAX_RETRIES + ["SUCCESS"]
    assert delivered_ids(smtp_server) == [notification_id]
    assert smtp_server.handler.data_replies == []


@pytest.mark.usefixtures("queue_retries_only")
def test_transient_failures_give_up_after_the_last_retry(
    client: TestClient, smtp_server: SmtpServer, celery_tasks: TaskTracker, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.data_replies.extend([TRANSIENT] * (MAX_RETRIES + 1))

    notification_id = post(client)

    assert celery_tasks.wait_final(notification_id) == ["RETRY"] * MAX_RETRIES + ["REJECTED"]
    assert smtp_server.received == []
    assert f"notification {notification_id}: giving up after {MAX_RETRIES} queued retries" in caplog.text


def test_permanent_failure_is_rejected_at_once_and_logged(
    client: TestClient, smtp_server: SmtpServer, celery_tasks: TaskTracker, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.handler.data_replies.append(PERMANENT)

    notification_id = post(client)

    assert celery_tasks.wait_final(notification_id) == ["REJECTED"]
    assert smtp_server.received == []
    assert f"notification {notification_id} not delivered (permanent failure)" in caplog.text
    assert "550 5.7.1 message refused" in caplog.text


def test_unreachable_broker_answers_503_and_never_shows_its_password(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker = f"redis://:{BROKER_PASSWORD}@127.0.0.1:{free_port()}/0"

    with service(monkeypatch, CELERY_BROKER_URL=broker) as client:
        response = client.post("/notifications", json=NOTIFICATION, headers=auth())

    assert response.status_code == 503
    assert "retry later" in response.json()["detail"]
    assert "not accepted: the broker did not accept notification" in caplog.text
    assert "127.0.0.1" in caplog.text
    assert BROKER_PASSWORD not in response.text + caplog.text
    assert smtp_server.received == []


def test_visibility_timeout_must_outlast_retry_waits_and_slow_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "900")  # < 600 s backoff + 2 x 300 s time limit

    with pytest.raises(SettingsError) as raised:
        load_settings(CelerySettings)

    message = str(raised.value)
    assert "CELERY_VISIBILITY_TIMEOUT must exceed" in message
    assert "(1200 s)" in message
    assert "\n" not in message


def test_broker_password_stays_out_of_errors_and_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = f"amqp://notifier:{BROKER_PASSWORD}@rabbitmq.internal:5672//"
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    monkeypatch.setenv("CELERY_MAX_RETRIES", "many")

    with pytest.raises(SettingsError) as raised:
        load_settings(CelerySettings)
    assert "CELERY_MAX_RETRIES" in str(raised.value)
    assert BROKER_PASSWORD not in str(raised.value)

    monkeypatch.delenv("CELERY_MAX_RETRIES")
    settings = load_settings(CelerySettings)
    assert settings.broker_url.get_secret_value() == broker
    assert BROKER_PASSWORD not in repr(settings) + str(settings)


def test_dev_worker_delivers_without_a_broker(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERY_QUEUE", "dev")  # its own queue, away from the suite's worker
    stop = start_dev_worker()
    try:
        with service(monkeypatch) as client:
            notification_id = post(client)
        smtp_server.handler.wait_for(1)
    finally:
        stop()

    assert delivered_ids(smtp_server) == [notification_id]


def test_worker_with_bad_mail_settings_stops_at_start_with_one_line(tmp_path: Path) -> None:
    environment = worker_environment(CELERY_BROKER_URL="memory://localhost/", MAIL_PASSWORD="Mail-Pa55word")

    completed = subprocess.run(
        worker_command("--pool", "solo"),
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2
    assert completed.stderr.splitlines()[-1].startswith("error: invalid settings: MAIL_SERVER is required")
    assert "Traceback" not in completed.stderr
    assert "Mail-Pa55word" not in completed.stdout + completed.stderr


def test_a_direct_celery_settings_load_hides_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_MAX_RETRIES", "redis://:broker-secret@host")

    with pytest.raises(ValidationError) as raised:
        CelerySettings()

    assert "broker-secret" not in str(raised.value)
