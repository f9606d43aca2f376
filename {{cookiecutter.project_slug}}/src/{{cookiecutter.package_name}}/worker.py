"""Celery workers: `celery -A {{ cookiecutter.package_name }}.worker worker` sends the queued notifications.

Delivery is at least once. A message is acknowledged only when its email was accepted
by the SMTP server or failed for good (`acks_late`); the message of a worker process
that dies or runs out of time is delivered again (`task_reject_on_worker_lost`,
`acks_on_timeout=False`, and on Redis once CELERY_VISIBILITY_TIMEOUT has passed). A crash
between sending and acknowledging sends the email twice: both copies carry the same
X-Notification-ID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import Reject
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import SERVICE_NAME
from .delivery import deliver
from .mail import DeliveryResult, Mailer, MailError, MailSettings, SettingsError, load_settings
from .notifications import Notification

TASK_NAME = "{{ cookiecutter.package_name }}.send_notification"
DEV_BROKER = "memory://localhost/"

logger = logging.getLogger(__name__)


class CelerySettings(BaseSettings):
    """The broker and how hard the workers try, from `CELERY_*` variables (and `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="CELERY_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a ValidationError's text must not carry the broker password
    )

    broker_url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        description="Broker URL: redis://host:6379/0, or amqp://user:password@host:5672// for RabbitMQ; never logged.",
    )
    queue: str = Field(
        default="notifications",
        min_length=1,
        description="Queue the notifications travel on; the service and its workers must use the same.",
    )
    visibility_timeout: int = Field(
        default=3600,
        ge=1,
        le=86400,
        description=(
            "Redis: seconds after which a message held by a worker that died is delivered again; must exceed "
            "CELERY_RETRY_BACKOFF_MAX + 2 x CELERY_TASK_TIME_LIMIT."
        ),
    )
    task_time_limit: int = Field(
        default=300,
        ge=1,
        description="Seconds one send may take before its worker process is killed and replaced.",
    )
    max_retries: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Queued retries of a transient SMTP failure (after the Mailer's MAIL_MAX_RETRIES) before giving up.",
    )
    retry_backoff: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Seconds before the first queued retry; doubles with each retry, plus jitter.",
    )
    retry_backoff_max: float = Field(
        default=600.0, gt=0, description="Longest wait between queued retries, in seconds."
    )

    @model_validator(mode="after")
    def _check_visibility_timeout(self) -> CelerySettings:
        # A retry waits in its worker (unacknowledged) until due, then may wait for a free process and
        # run: all of it must fit in the visibility timeout, or Redis hands the message out a second time.
        needed = self.retry_backoff_max + 2 * self.task_time_limit
        if self.visibility_timeout <= needed:
            raise ValueError(
                f"CELERY_VISIBILITY_TIMEOUT must exceed CELERY_RETRY_BACKOFF_MAX + 2 x CELERY_TASK_TIME_LIMIT "
                f"({needed:g} s), or delayed retries and slow sends are delivered twice"
            )
        return self


class MailRuntime:
    """The pooled `Mailer` of one worker process, on an event loop thread of its own.

    The first task of a process starts it and the process's shutdown closes it, so the
    SMTP sessions serve every task the process runs (prefork, solo or threads pool).
    """

    def __init__(self, service_name: str) -> None:
        self._service_name = service_name
        self._lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, threading.Thread, Mailer] | None = None

    def send(self, notification: Notification) -> DeliveryResult:
        """Send `notification` (see `deliver`); blocks until the server answered."""
        loop, _, mailer = self._start()
        return asyncio.run_coroutine_threadsafe(
            deliver(mailer, notification, self._service_name), loop
        ).result()

    def close(self) -> None:
        """Finish the sends in flight and close the SMTP sessions; a later send starts afresh."""
        with self._lock:
            running, self._running = self._running, None
        if running is None:
            return
        loop, thread, mailer = running
        asyncio.run_coroutine_threadsafe(mailer.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _start(self) -> tuple[asyncio.AbstractEventLoop, threading.Thread, Mailer]:
        with self._lock:
            if self._running is None:
                mailer = Mailer(load_settings(MailSettings))
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="mailer-loop", daemon=True)
                thread.start()
                self._running = (loop, thread, mailer)
            return self._running


MAIL = MailRuntime(SERVICE_NAME)
"""This process's mailer: one SMTP pool per worker process."""


def retry_delay(retries: int, settings: CelerySettings) -> float:
    """Seconds before queued retry `retries + 1`: doubling from CELERY_RETRY_BACKOFF, +-50% jitter, capped."""
    jitter = random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not cryptography
    return min(settings.retry_backoff * 2.0**retries * jitter, settings.retry_backoff_max)


def send_notification(task: Task[..., None], payload: dict[str, Any], settings: CelerySettings) -> None:
    """The task: send one notification; retry transient failures through the queue, reject permanent ones.

    A rejected message is dropped on Redis; on RabbitMQ it goes to the queue's dead-letter exchange, if any.
    """
    notification = Notification.model_validate(payload)
    try:
        MAIL.send(notification)
    except MailError as error:
        retries: int = task.request.retries
        if not error.transient:
            raise Reject(
                f"notification {notification.id}: permanent failure, not retried", requeue=False
            ) from None
        if retries >= settings.max_retries:
            logger.error(
                "notification %s: giving up after %d queued retries: %s", notification.id, retries, error
            )
            raise Reject(
                f"notification {notification.id}: still failing after {retries} retries", requeue=False
            ) from None
        raise task.retry(
            exc=error, countdown=retry_delay(retries, settings), max_retries=settings.max_retries
        ) from None


def create_celery_app(settings: CelerySettings) -> Celery:
    """A Celery app for `settings`: at-least-once delivery, JSON messages, the send task registered."""
    app = Celery("{{ cookiecutter.package_name }}")
    app.conf.update(
        broker_url=settings.broker_url.get_secret_value(),
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Redis: look for messages of dead workers every tenth of the timeout (1-10 s), not every 100 s.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
            # RabbitMQ: a publish returns only once the broker has the message.
            "confirm_publish": True,
        },
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=settings.task_time_limit,
        worker_prefetch_multiplier=1,
    )

    def task(self: Task[..., None], payload: dict[str, Any]) -> None:
        send_notification(self, payload, settings)

    # acks_on_timeout=False: a send cut off by CELERY_TASK_TIME_LIMIT goes back to the queue, not away.
    app.task(name=TASK_NAME, bind=True, shared=False, acks_on_timeout=False)(task)
    return app


def start_dev_worker() -> Callable[[], None]:
    """Development (`make dev`): a worker thread in this process on Celery's in-memory broker; returns `stop`.

    Points CELERY_BROKER_URL at that broker, so the service in this process needs no Redis.
    """
    os.environ["CELERY_BROKER_URL"] = DEV_BROKER
    app = create_celery_app(load_settings(CelerySettings))
    app.conf.broker_transport_options["polling_interval"] = 0.1
    controller = app.WorkController(
        pool="solo", without_mingle=True, without_gossip=True, without_heartbeat=True
    )

    def run() -> None:
        app.set_current()  # the solo pool looks tasks up on this thread's current app
        controller.start()

    thread = threading.Thread(target=run, name="dev-worker", daemon=True)
    thread.start()

    def stop() -> None:
        app.control.shutdown(destination=[controller.hostname])  # type: ignore[attr-defined]  # set at start-up; celery-types lacks it
        thread.join(timeout=10)

    return stop


def exit_with(error: SettingsError) -> NoReturn:
    """Stop the process with `error` as one line on stderr (exit code 2)."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


def _check_mail_settings(**_: object) -> None:
    """At worker start, before any message is taken: the MAIL_* settings must load."""
    try:
        load_settings(MailSettings)
    except SettingsError as error:
        exit_with(error)


def _close_mail(**_: object) -> None:
    MAIL.close()


worker_init.connect(_check_mail_settings)
worker_process_shutdown.connect(_close_mail)
worker_shutdown.connect(_close_mail)

try:
    celery_app = create_celery_app(load_settings(CelerySettings))
except SettingsError as settings_error:
    exit_with(settings_error)
