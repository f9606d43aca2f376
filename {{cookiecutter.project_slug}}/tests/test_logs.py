"""Logs through real parts: JSON lines that parse, name their notification and request, and hold no secret or body."""

from __future__ import annotations

import json
{%- if cookiecutter.delivery == "celery" %}
import subprocess
{%- endif %}
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.cli import main as cli_main
from {{ cookiecutter.package_name }}.store import StoreSettings
{%- if cookiecutter.delivery == "celery" %}

from .celery_worker import TaskTracker, worker_command, worker_environment
from .conftest import API_KEY, auth, migrate, service
from .redis_server import running_redis
{%- else %}

from .conftest import API_KEY, auth, migrate, service
{%- endif %}
from .service_process import ServiceProcess
from .smtp_server import PASSWORD, SmtpServer
from .test_outbox import wait_for_status

PACKAGE = "{{ cookiecutter.package_name }}"
REQUEST_ID = "checkout-7f3a-0001"
BODY = "Your order 4711 has shipped"
NOTIFICATION = {"to": ["alice@example.com", "bob@example.org"], "subject": "Shipped", "body": BODY}
TRACED = {**auth(), "X-Request-ID": REQUEST_ID}
FIELDS = {"timestamp", "level", "logger", "message"}
{%- if cookiecutter.delivery == "celery" %}
ROOT_WARNING = "You're running the worker with superuser privileges"
{%- endif %}


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as a JSON object (a line that is not JSON fails the test), with the fields."""
    lines = [json.loads(line) for line in output.splitlines()]
    for line in lines:
        assert line.keys() >= FIELDS, line
        assert line["timestamp"].endswith("Z")
        assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)
    return lines


def about(lines: list[dict[str, Any]], notification_id: str) -> list[dict[str, Any]]:
    """The lines of this package that mention `notification_id`, each of which must carry it as a field."""
    ours = [line for line in lines if line["logger"].startswith(PACKAGE)]
    mentioning = [line for line in ours if notification_id in line["message"]]
    assert all(line.get("notification_id") == notification_id for line in mentioning), mentioning
    return [line for line in lines if line.get("notification_id") == notification_id]


def assert_clean(output: str) -> None:
    """No secret and no body in the logs."""
    for secret in (PASSWORD, API_KEY, BODY):
        assert secret not in output


def test_json_lines_of_a_retried_send_name_its_request_and_notification(
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
{%- if cookiecutter.delivery == "celery" %}
    celery_tasks: TaskTracker,
{%- endif %}
) -> None:
    # The first send fails twice (the mailer retries once), so it is retried from the store later.
    smtp_server.handler.data_replies.extend(["451 4.3.0 try again later"] * 2)
    environment = {"LOG_FORMAT": "json", "MAIL_MAX_RETRIES": "1", "MAIL_RETRY_BASE_DELAY": "0"}
    with service(monkeypatch, **environment, DELIVERY_RETRY_BACKOFF="0.2") as client:
        response = client.post("/notifications", json=NOTIFICATION, headers=TRACED)
        notification_id = response.json()["id"]
        sent = wait_for_status(client, notification_id, "sent")
{%- if cookiecutter.delivery == "celery" %}
        celery_tasks.wait_idle()
{%- endif %}
    output = capsys.readouterr().err

    assert response.headers["X-Request-ID"] == REQUEST_ID
    assert sent["request_id"] == REQUEST_ID
    assert len(sent["attempts"]) == 2
    lines = about(json_lines(output), notification_id)
    assert {line["request_id"] for line in lines} == {REQUEST_ID}
    messages = [(line["logger"].removeprefix(PACKAGE), line["level"], line["message"]) for line in lines]
    queued = f"notification {notification_id} queued for 2 recipient(s) of client default"
    assert (".api.notifications", "INFO", queued) in messages
    [retry] = [message for logger, level, message in messages if logger == ".mail.core.mailer"]
    assert retry.endswith("server replied 451 4.3.0 try again later; retry 1 of 1 in 0.00 s")  # the mailer's
    retried = f"notification {notification_id} retrying: "
    [retrying] = [message for *_, message in messages if message.startswith(retried)]
    assert retrying.endswith("451 4.3.0 try again later (gave up after 2 attempts)")
    delivered = f"notification {notification_id} delivered to 2 recipient(s) after 2 attempt(s)"
    assert (".delivery.dispatcher", "INFO", delivered) in messages  # the retry later on: ids from the store
    assert_clean(output)


@pytest.mark.parametrize(
    "incoming",
    ["x" * 129, "two words", "caf\u00e9".encode(), "x]_[notification=0123", "key=value", "id/with/slashes"],
    ids=["long", "space", "utf8", "forged-tag", "equals", "slash"],
)
def test_a_bad_request_id_is_replaced_and_never_echoed(
    client: TestClient, capsys: pytest.CaptureFixture[str], incoming: str | bytes
) -> None:
    response = client.post("/notifications", json=NOTIFICATION, headers={**auth(), "X-Request-ID": incoming})
    notification = client.get(f"/notifications/{response.json()['id']}", headers=auth()).json()

    replaced = response.headers["X-Request-ID"]
    assert replaced == uuid.UUID(hex=replaced).hex  # a new one
    assert notification["request_id"] == replaced
    bad = incoming.decode("latin-1") if isinstance(incoming, bytes) else incoming
    assert bad not in capsys.readouterr().err


def test_a_request_id_of_letters_digits_and_safe_punctuation_is_kept(client: TestClient) -> None:
    incoming = "Svc-1.retry_2:" + "x" * 114
    assert client.get("/health", headers={"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming


def test_an_unhandled_error_answers_500_with_the_request_id(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = service(monkeypatch).app

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)  # type: ignore[attr-defined]
    with TestClient(app, raise_server_exceptions=False) as client:
        traced = client.get("/broken", headers={"X-Request-ID": "r-500"})
        made = client.get("/broken")

    assert (traced.status_code, made.status_code) == (500, 500)
    assert traced.headers["X-Request-ID"] == "r-500"
    assert len(made.headers["X-Request-ID"]) == 32


def test_every_answer_carries_the_request_id_errors_included(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    oversized = json.dumps({**NOTIFICATION, "body": "x" * 2048}).encode()
    with service(monkeypatch, MAX_REQUEST_BYTES="1024") as client:
        answers = {
            401: client.post("/notifications", json=NOTIFICATION, headers={"X-Request-ID": "r-401"}),
            413: client.post(
                "/notifications",
                content=oversized,
                headers={**auth(), "Content-Type": "application/json", "X-Request-ID": "r-413"},
            ),
            422: client.post("/notifications", json={"to": []}, headers={**auth(), "X-Request-ID": "r-422"}),
            200: client.get("/health", headers={"X-Request-ID": "r-200"}),
        }
        made = client.get("/health").headers["X-Request-ID"]

    assert {status: answer.status_code for status, answer in answers.items()} == {s: s for s in answers}
    assert {answer.headers["X-Request-ID"] for answer in answers.values()} == {f"r-{s}" for s in answers}
    assert len(made) == 32


def test_text_lines_end_with_the_ids(
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
{%- if cookiecutter.delivery == "celery" %}
    celery_tasks: TaskTracker,
{%- endif %}
) -> None:
    response = client.post("/notifications", json=NOTIFICATION, headers=TRACED)
    notification_id = response.json()["id"]
    wait_for_status(client, notification_id, "sent")
{%- if cookiecutter.delivery == "celery" %}
    celery_tasks.wait_idle()
{%- endif %}
    output = capsys.readouterr().err

    ids = f"[notification={notification_id} request={REQUEST_ID}]"
    [queued] = [line for line in output.splitlines() if f"notification {notification_id} queued" in line]
    assert queued.endswith(ids)
    assert queued.split()[2:4] == ["INFO", f"{PACKAGE}.api.notifications:"]
    [delivered] = [
        line for line in output.splitlines() if f"notification {notification_id} delivered" in line
    ]
    assert delivered.endswith(ids)


def test_uvicorn_lines_are_json_too_and_its_access_lines_carry_the_request_id(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    migrate(StoreSettings().database_url)
    log = tmp_path / "service.log"
    with ServiceProcess(log, log_level="info", LOG_FORMAT="json") as process:
        answer = httpx.get(f"{process.url}/health/ready", headers={"X-Request-ID": REQUEST_ID})

    assert answer.headers["X-Request-ID"] == REQUEST_ID
    lines = json_lines(log.read_text())
    server = [line["message"] for line in lines if line["logger"] == "uvicorn.error"]
    assert "Application startup complete." in server
    access_lines = [line for line in lines if line["logger"] == "uvicorn.access"]
    [access] = [line for line in access_lines if "/health/ready" in line["message"]]  # start() polls /health
    assert access["request_id"] == REQUEST_ID
    assert access["message"].endswith('"GET /health/ready HTTP/1.1" 200')


def test_a_debug_run_logs_no_body_subject_recipient_or_idempotency_key(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """LOG_LEVEL=DEBUG turns on the service's own debug lines, not the libraries' (aiosqlite logs every
    statement with its parameters)."""
    recipient, subject = "carol.private@example.net", "Statement 0193 for Carol"
    key = f"key-{uuid.uuid4().hex}"
    private = {"to": [recipient], "subject": subject, "body": BODY}
    headers = {**auth(), "Idempotency-Key": key}
    migrate(StoreSettings().database_url)
    log = tmp_path / "service.log"
{%- if cookiecutter.delivery == "celery" %}
    worker_log = tmp_path / "worker.log"
    queue = f"test-{uuid.uuid4().hex}"
    with running_redis(tmp_path) as redis:
        with worker_log.open("wb") as stream:
            worker = subprocess.Popen(
                worker_command("--pool", "solo", "--without-mingle", "--without-gossip"),
                env=worker_environment(
                    CELERY_BROKER_URL=redis.url,
                    CELERY_QUEUE=queue,
                    LOG_LEVEL="DEBUG",
                    PYTHONWARNINGS=f"ignore:{ROOT_WARNING}",
                ),
                cwd=tmp_path,
                stdout=stream,
                stderr=subprocess.STDOUT,
            )
        try:
            with ServiceProcess(
                log, log_level="debug", LOG_LEVEL="DEBUG", CELERY_BROKER_URL=redis.url, CELERY_QUEUE=queue
            ) as process:
                answer = httpx.post(f"{process.url}/notifications", json=private, headers=headers)
                smtp_server.handler.wait_for(1, timeout=30)
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    output = log.read_text() + worker_log.read_text()
{%- else %}
    with ServiceProcess(log, log_level="debug", LOG_LEVEL="DEBUG") as process:
        answer = httpx.post(f"{process.url}/notifications", json=private, headers=headers)
        smtp_server.handler.wait_for(1)
    output = log.read_text()
{%- endif %}

    assert answer.status_code == 202
    assert f"DEBUG {PACKAGE}.mail.core.pool: opened an SMTP session" in output  # the service's debug lines
    for value in (BODY, subject, recipient, key):
        assert value not in output


def test_a_bad_log_format_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "yaml")
    assert cli_main(["purge"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "error: invalid settings: LOG_FORMAT: Input should be 'text' or 'json'"
{%- if cookiecutter.delivery == "celery" %}


def test_a_celery_worker_process_logs_json_with_the_request_id_of_the_post(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`celery worker` on a real Redis: Celery leaves the logging to the service's set-up."""
    with running_redis(tmp_path) as redis:
        broker = {"CELERY_BROKER_URL": redis.url, "CELERY_QUEUE": f"test-{uuid.uuid4().hex}"}
        migrate(StoreSettings().database_url)  # the service and the worker share this test's store
        log = tmp_path / "worker.err"
        with log.open("wb") as stderr:
            worker = subprocess.Popen(
                worker_command("--pool", "solo", "--without-mingle", "--without-gossip"),
                # As root (this test's container), Celery warns before any logging is set up: not a log line.
                env=worker_environment(**broker, LOG_FORMAT="json", PYTHONWARNINGS=f"ignore:{ROOT_WARNING}"),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            with service(monkeypatch, **broker) as client:
                response = client.post("/notifications", json=NOTIFICATION, headers=TRACED)
                notification_id = response.json()["id"]
                wait_for_status(client, notification_id, "sent", timeout=30)
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    output = log.read_text()

    lines = json_lines(output)
    assert any(line["logger"].startswith("celery") for line in lines)  # Celery's own lines too, as JSON
    worker_lines = about(lines, notification_id)
    delivered = f"notification {notification_id} delivered to 2 recipient(s) after 1 attempt(s)"
    assert [line["message"] for line in worker_lines] == [delivered]
    assert worker_lines[0]["request_id"] == REQUEST_ID
    assert_clean(output)
{%- endif %}
