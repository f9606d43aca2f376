"""In-process delivery survives a SIGKILL of the service: 200 of 200 delivered after a restart on the same store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from {{ cookiecutter.package_name }}.store import NotificationStore, Status, open_engine

from .conftest import auth, migrate
from .service_process import ServiceProcess
from .smtp_server import SmtpServer
from .test_outbox import NOTIFICATION, wait_for_status

LEASE = "5"
"""DELIVERY_LEASE of both processes (s): short, so the test waits seconds for the dead one's claims, not a minute."""


def sending_now(database_url: str) -> int:
    """How many notifications are claimed (`sending`) in the store at `database_url`."""

    async def count() -> int:
        store = NotificationStore(open_engine(database_url))
        try:
            return (await store.backlog()).counts[Status.SENDING]
        finally:
            await store.aclose()

    return asyncio.run(count())


def test_a_killed_service_loses_nothing_and_duplicates_at_most_its_sends_in_flight(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.delay = 0.2  # a slow server: 0.2 s per message
    migrate(database_url)
    log = tmp_path / "service.log"
    first = ServiceProcess(log, DELIVERY_LEASE=LEASE).start()
    with httpx.Client(base_url=first.url, headers=auth(), timeout=30) as client:
        ids = {client.post("/notifications", json=NOTIFICATION).json()["id"] for _ in range(200)}
    smtp_server.handler.wait_for(10, timeout=30)
    first.kill()
    in_flight = sending_now(database_url)
    delivered_before = len(smtp_server.received)

    # What the dead process held is claimed again once its DELIVERY_LEASE expired.
    with (
        ServiceProcess(log, DELIVERY_LEASE=LEASE) as second,
        httpx.Client(base_url=second.url, headers=auth()) as client,
    ):
        deadline = time.monotonic() + float(LEASE) + 40 + 30
        while {r.message["X-Notification-ID"] for r in smtp_server.received} != ids:
            assert time.monotonic() < deadline, f"{len(smtp_server.received)} of 200 arrived"
            time.sleep(0.5)
        statuses = {wait_for_status(client, each, "sent")["status"] for each in ids}

    arrived = [received.message["X-Notification-ID"] for received in smtp_server.received]
    duplicates = len(arrived) - len(set(arrived))
    assert len(ids) == 200
    assert delivered_before < 200
    assert statuses == {"sent"}
    assert duplicates <= in_flight
