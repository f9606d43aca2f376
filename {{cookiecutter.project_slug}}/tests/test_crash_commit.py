"""A 202 is a committed row: the service killed (SIGKILL) while POSTs wait for their commit answers none of them,
keeps every one it answered{% if cookiecutter.delivery == "background" %}, and after a restart delivers each of those once{% endif %}."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
{%- if cookiecutter.delivery == "background" %}
from collections import Counter
{%- endif %}
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.store import NotificationRecord, NotificationStore, open_engine

from .conftest import auth, migrate
from .service_process import ServiceProcess
from .smtp_server import SmtpServer
from .test_outbox import NOTIFICATION{% if cookiecutter.delivery == "background" %}, wait_for_status{% endif %}

CLIENTS = 8
HELD = 1.0
"""Seconds the test holds the store's write lock; the service is killed halfway."""
LEASE, BACKOFF = "3", "0.2"
"""DELIVERY_LEASE and DELIVERY_RETRY_BACKOFF: seconds, not a minute, before what the dead process had claimed or
tried is sent again."""


@contextlib.contextmanager
def commits_wait(database_url: str) -> Iterator[None]:
    """Hold the store's write lock for the block: every insert the service runs meanwhile waits for its commit
    (SQLite: BEGIN IMMEDIATE on the file; PostgreSQL: the table locked against writes)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(url.database), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        connection = await asyncpg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE notifications IN EXCLUSIVE MODE")
                locked.set()
                await asyncio.to_thread(release.wait)
        finally:
            await connection.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    assert locked.wait(10), "could not lock the notifications table"
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def stored_ids(database_url: str) -> list[str]:
    """The ids of the notifications the store at `database_url` holds."""

    async def ids() -> list[str]:
        store = NotificationStore(open_engine(database_url))
        try:
            async with store.engine.connect() as connection:
                return list(await connection.scalars(select(NotificationRecord.id)))
        finally:
            await store.aclose()

    return asyncio.run(ids())


def test_a_service_killed_while_commits_wait_answered_202_only_for_rows_it_kept(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    migrate(database_url)
    log = tmp_path / "service.log"
    # Nothing listens on the first process's MAIL_PORT, so nothing is sent before the kill: a copy too many
    # could only come from a row that is there twice or delivered twice after the restart.
    first = ServiceProcess(
        log, MAIL_PORT=str(free_port()), DELIVERY_LEASE=LEASE, DELIVERY_RETRY_BACKOFF=BACKOFF
    ).start()
    accepted: list[str] = []
    cut_off: list[str] = []
    stop = threading.Event()

    def post_until_stopped() -> None:
        with httpx.Client(base_url=first.url, headers=auth(), timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/notifications", json=NOTIFICATION)
                except httpx.TransportError as error:  # in flight when the process died
                    cut_off.append(type(error).__name__)
                    return
                assert answer.status_code == 202, answer.text
                accepted.append(answer.json()["id"])

    clients = [threading.Thread(target=post_until_stopped) for _ in range(CLIENTS)]
    for each in clients:
        each.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 50:
        assert time.monotonic() < deadline, f"only {len(accepted)} POSTs answered"
        time.sleep(0.01)
    with commits_wait(database_url):
        time.sleep(HELD / 2)  # every client's POST now waits for its insert to commit
        first.kill()
        time.sleep(HELD / 2)
    stop.set()
    for each in clients:
        each.join(30)

    assert len(cut_off) == CLIENTS  # each client had a POST in flight, none answered
    kept = stored_ids(database_url)
    assert sorted(kept) == sorted(accepted)  # no 202 without its row, and no row of a POST left unanswered
{%- if cookiecutter.delivery == "background" %}
    with ServiceProcess(log, DELIVERY_LEASE=LEASE, DELIVERY_RETRY_BACKOFF=BACKOFF) as second:
        deadline = time.monotonic() + 60
        while len(smtp_server.received) < len(accepted):
            assert time.monotonic() < deadline, f"{len(smtp_server.received)} of {len(accepted)} delivered"
            time.sleep(0.2)
        time.sleep(1)  # a copy too many would arrive now
        with httpx.Client(base_url=second.url, headers=auth()) as client:
            statuses = {wait_for_status(client, each, "sent")["status"] for each in accepted}

    copies = Counter(received.message["X-Notification-ID"] for received in smtp_server.received)
    assert statuses == {"sent"}
    assert set(copies) == set(accepted)
    assert set(copies.values()) == {1}
{%- endif %}
