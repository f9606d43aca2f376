"""The Celery app both sides share, without side effects: the service publishes with it, `worker.py` runs it.

A message carries only a notification id; the notification itself stays in the store. Messages
are acknowledged as a worker process starts them (not `acks_late`): a worker that dies leaves its
notification `sending` in the store, and the service's sweeper publishes it again once
DELIVERY_LEASE has passed; a redelivered message finds the notification claimed or sent and sends
nothing. Until it starts, a message waits at most one running send (CELERY_TASK_TIME_LIMIT), so
Redis's visibility timeout must be longer.
"""

from __future__ import annotations

from celery import Celery
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ..mail.core.loading import EnvSettings

TASK_NAME = "{{ cookiecutter.package_name }}.send_notification"
DEV_BROKER = "memory://localhost/"


class CelerySettings(EnvSettings):
    """The broker and the workers' limits, from `CELERY_*` variables (and `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="CELERY_",
        hide_input_in_errors=True,  # a ValidationError's text must not carry the broker password
    )

    broker_url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        description="Broker URL: redis://host:6379/0, or amqp://user:password@host:5672// for RabbitMQ; never logged.",
    )
    queue: str = Field(
        default="notifications",
        min_length=1,
        description="Queue the notification ids travel on; the service and its workers must use the same.",
    )
    visibility_timeout: int = Field(
        default=10800,
        ge=1,
        le=86400,
        description=(
            "Redis: seconds after which a message taken by a worker that died is handed out again; "
            "must exceed CELERY_TASK_TIME_LIMIT."
        ),
    )
    task_time_limit: int = Field(
        default=7200,
        ge=1,
        description=(
            "Seconds after which a hung send's worker process is killed and replaced (the attempt counts); "
            "must exceed the longest send the MAIL_* settings allow (6356 s by default)."
        ),
    )


def create_celery_app(settings: CelerySettings) -> Celery:
    """A Celery app for `settings`: JSON messages carrying notification ids, no results kept."""
    app = Celery("{{ cookiecutter.package_name }}")
    app.conf.update(
        broker_url=settings.broker_url.get_secret_value(),
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # RabbitMQ: a publish returns only once the broker has the message.
            "confirm_publish": True,
            # Fail fast when the broker is down: the store keeps the notification, the sweeper publishes it later.
            "max_retries": 1,
        },
        broker_connection_timeout=2,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_time_limit=settings.task_time_limit,
        worker_prefetch_multiplier=1,
    )
    return app
