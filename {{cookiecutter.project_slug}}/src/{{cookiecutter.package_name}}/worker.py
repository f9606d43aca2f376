"""Celery workers: `celery -A {{ cookiecutter.package_name }}.worker worker` sends the notifications the service queued.

Each message carries a notification id. The worker claims that notification in the store with a
lease (DELIVERY_LEASE) and sends it through its process's pooled `Mailer`; a notification already
sent, failed, or claimed by another worker is skipped, so a message delivered twice sends nothing
twice. Failures are recorded in the store like in-process delivery: transient ones are rescheduled
(the service's sweeper publishes them when due), permanent ones become `failed`. A worker process
killed mid-send (SIGKILL, or CELERY_TASK_TIME_LIMIT for a process that hangs: the limit exceeds the
longest send the MAIL_* settings allow) leaves its claim to expire; the attempt counts, and a
notification past DELIVERY_MAX_ATTEMPTS becomes `failed`. A send that reached the server just before
the kill is sent again: both copies carry the same Message-ID and X-Notification-ID.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_shutdown, worker_shutdown
from limits.aio.storage import Storage

from . import SERVICE_NAME
from .delivery.celery_app import DEV_BROKER, TASK_NAME, CelerySettings, create_celery_app
from .delivery.dispatcher import Dispatcher
from .delivery.holding import sending_gate
from .delivery.metrics import delivery_metrics
from .delivery.queued import limits_storage
from .delivery.settings import DeliverySettings
from .feedback.sending import SendFeedback
from .mail import Mailer, MailSettings, SettingsError, load_settings
from .mail.core.session import longest_send
from .observability.logs import LogSettings, configure_logging
from .observability.metrics import MetricsSettings, process_exiting
from .ratelimit.settings import RateLimitSettings, limits_in_force
from .ratelimit.storage import close_storage
from .settings import RecipientLimit, check_metrics_dir
from .store import (
    NotificationStore,
    SchemaError,
    Status,
    StoreSettings,
    check_schema,
    open_engine,
)

logger = logging.getLogger(__name__)


def check_limits(celery: CelerySettings, mail: MailSettings, recipients: int) -> None:
    """The time limit must outlast the longest send, and Redis must not hand out a message a live worker holds.

    A send cut off after its data went out (the server may take MAIL_DATA_TIMEOUT to answer it) is sent
    again: a duplicate. A message a worker has taken waits at most one task (its process is busy) before it is
    acknowledged; past CELERY_VISIBILITY_TIMEOUT Redis would hand it to a second worker too (the store's claim
    keeps the email single, but the message runs twice).
    """
    longest = math.ceil(longest_send(mail, recipients))
    if celery.task_time_limit <= longest:
        raise SettingsError(
            f"invalid settings: CELERY_TASK_TIME_LIMIT ({celery.task_time_limit} s) must exceed the longest send "
            f"the MAIL_* settings allow ({longest} s from MAIL_TIMEOUT per step, MAIL_DATA_TIMEOUT, MAIL_MAX_RETRIES "
            f"and MAX_RECIPIENTS={recipients}), or a send killed after its data went out is sent twice: raise "
            f"CELERY_TASK_TIME_LIMIT above {longest} or lower those settings"
        )
    redis = celery.broker_url.get_secret_value().startswith(("redis://", "rediss://", "sentinel://"))
    if redis and celery.visibility_timeout <= celery.task_time_limit:
        raise SettingsError(
            f"invalid settings: CELERY_VISIBILITY_TIMEOUT ({celery.visibility_timeout} s) must exceed "
            f"CELERY_TASK_TIME_LIMIT ({celery.task_time_limit} s), or Redis hands a message waiting behind a "
            "running send to a second worker: raise CELERY_VISIBILITY_TIMEOUT"
        )


class DeliveryRuntime:
    """The `Dispatcher` of one worker process (store, pooled `Mailer`) on an event loop thread of its own.

    The first task of a process starts it and the process's shutdown closes it, so the SMTP sessions
    and database connections serve every task the process runs (prefork, solo or threads pool).
    """

    def __init__(self, service_name: str) -> None:
        self._service_name = service_name
        self._lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, threading.Thread, Dispatcher, Mailer] | None = None
        self._storage: Storage | None = None
        """Where the sending limits are counted (Redis or the store's database)."""

    def deliver(self, notification_id: str) -> Status | None:
        """Claim and send `notification_id` (see `Dispatcher.deliver_id`); blocks until its outcome is recorded."""
        loop, _, dispatcher, _ = self._start()
        return asyncio.run_coroutine_threadsafe(dispatcher.deliver_id(notification_id), loop).result()

    def close(self) -> None:
        """Finish the sends in flight, close the SMTP sessions and the store; a later send starts afresh."""
        with self._lock:
            running, self._running = self._running, None
        if running is None:
            return
        loop, thread, dispatcher, mailer = running
        storage, self._storage = self._storage, None

        async def close() -> None:
            await mailer.aclose()
            if storage is not None:
                await close_storage(storage)
            await dispatcher.store.aclose()

        asyncio.run_coroutine_threadsafe(close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _start(self) -> tuple[asyncio.AbstractEventLoop, threading.Thread, Dispatcher, Mailer]:
        with self._lock:
            if self._running is None:
                mail = load_settings(MailSettings)
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="delivery-loop", daemon=True)
                thread.start()

                async def build() -> tuple[Dispatcher, Mailer]:
                    retention = load_settings(StoreSettings)
                    counting = load_settings(MetricsSettings)
                    metrics = delivery_metrics(counting)
                    mailer = Mailer(mail, metrics)
                    store = NotificationStore(open_engine(retention.database_url))
                    self._storage = limits_storage(store)
                    limits = limits_in_force(load_settings(RateLimitSettings), mail.server)
                    dispatcher = Dispatcher(
                        store,
                        mailer,
                        load_settings(DeliverySettings),
                        retention,
                        service_name=self._service_name,
                        sender=str(mail.from_address),
                        events=metrics,
                        gate=sending_gate(self._storage, mail, limits, counting),
                        feedback=SendFeedback.from_env(mail.server, metrics=metrics is not None),
                    )
                    return dispatcher, mailer

                dispatcher, mailer = asyncio.run_coroutine_threadsafe(build(), loop).result()
                self._running = (loop, thread, dispatcher, mailer)
            return self._running


RUNTIME = DeliveryRuntime(SERVICE_NAME)
"""This process's dispatcher: one SMTP pool and one database pool per worker process."""


def register_tasks(app: Celery) -> Celery:
    """Register the send task on `app` (a message holds only the notification id); returns `app`."""

    def send_notification(notification_id: str) -> None:
        RUNTIME.deliver(notification_id)

    app.task(name=TASK_NAME, shared=False)(send_notification)
    return app


def start_dev_worker() -> Callable[[], None]:
    """Development (`make dev`): a worker thread in this process on Celery's in-memory broker; returns `stop`.

    Points CELERY_BROKER_URL at that broker, so the service in this process needs no Redis.
    """
    os.environ["CELERY_BROKER_URL"] = DEV_BROKER
    app = register_tasks(create_celery_app(load_settings(CelerySettings)))
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
        RUNTIME.close()

    return stop


def exit_with(error: SettingsError | SchemaError) -> NoReturn:
    """Stop the process with `error` as one line on stderr (exit code 2)."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


def _check_settings(**_: object) -> None:
    """At worker start, before any message is taken: the settings must load and the store be migrated."""
    try:
        load_settings(DeliverySettings)
        mail = load_settings(MailSettings)
        recipients = load_settings(RecipientLimit).max_recipients
        check_limits(load_settings(CelerySettings), mail, recipients)
        problem = limits_in_force(load_settings(RateLimitSettings), mail.server).recipient_problem(recipients)
        if problem is not None:
            raise SettingsError(f"invalid settings: {problem}")
        SendFeedback.from_env(mail.server)  # BOUNCE_DOMAIN, WEBHOOK_*, SUPPRESSION_* and EVENTS_* load
        asyncio.run(_check_store(load_settings(StoreSettings).database_url))
        check_metrics_dir(load_settings(MetricsSettings))
    except (SettingsError, SchemaError) as error:
        exit_with(error)


async def _check_store(database_url: str) -> None:
    engine = open_engine(database_url)
    try:
        await check_schema(engine)
    finally:
        await engine.dispose()


def _configure_logging(**_: object) -> None:
    """Celery's `setup_logging`: workers log like the service (LOG_LEVEL, LOG_FORMAT, the ids), and Celery
    leaves the root logger alone (its --loglevel is not used)."""
    try:
        configure_logging(load_settings(LogSettings))
    except SettingsError as error:
        exit_with(error)


def _close(**_: object) -> None:
    RUNTIME.close()
    process_exiting()


setup_logging.connect(_configure_logging)
worker_init.connect(_check_settings)
worker_process_shutdown.connect(_close)
worker_shutdown.connect(_close)

try:
    celery_app = register_tasks(create_celery_app(load_settings(CelerySettings)))
except SettingsError as settings_error:
    exit_with(settings_error)
