"""The feedback loop's costs: provider events taken per second, and what the suppression list adds to sending.

1. `POST /webhooks/mailgun` on the rendered service (uvicorn subprocess, SQLite store): signed Mailgun
   `delivered` events, one per request (the worst case: Mailgun sends one event per request), each
   verified, matched to its notification and stored; events/s from the first request to the last answer
   (target: at least 1,000/s). Bare asyncio keep-alive clients, as in bench_e2e.py.
2. Sending to a list of 10,000 addresses (one notification each, or `--per-notification` recipients per
   notification) through the same service to the counting SMTP sink, with none of them suppressed and
   with 1,000 suppressed: seconds from the first notification stored until every one is finished
   (target: with 1,000 suppressed at most 10 % more than with none). Rounds alternate; the median counts.

Run with the template's virtualenv:

    .venv/bin/python benchmarks/bench_feedback.py [--events 5000] [--addresses 10000] [--suppressed 1000]
                                                  [--per-notification 1] [--rounds 3] [--json] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import importlib
import json
import os
import secrets
import statistics
import time
from typing import Any

from bench_e2e import API_KEY, migrate, serving
from common import BODY, Project, Sink, http_exchange, mail_env, make_tls, render_project, workspace

SIGNING_KEY = secrets.token_hex(16)
SENDGRID_BATCH = 100
TARGET_EVENTS_PER_SECOND = 1000.0
TARGET_SUPPRESSION_COST = 0.10
WEBHOOK_NOTIFICATIONS = 200


def sendgrid_request(
    port: int, key: Any, unique_args: list[dict[str, str]], recipients: list[str], batch: int
) -> bytes:
    """The bytes of one signed SendGrid Event Webhook POST of `batch` `delivered` events (SendGrid batches)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    now = int(time.time())
    events = [
        {
            "email": recipients[n % len(recipients)],
            "timestamp": now,
            "event": "delivered",
            "response": "250 OK",
            "sg_event_id": secrets.token_hex(11),
            **unique_args[n % len(unique_args)],
        }
        for n in range(batch)
    ]
    body = json.dumps(events).encode()
    signature = base64.b64encode(key.sign(str(now).encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    head = (
        f"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Twilio-Email-Event-Webhook-Signature: {signature}\r\n"
        f"X-Twilio-Email-Event-Webhook-Timestamp: {now}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def mailgun_request(port: int, notification_id: str, recipient: str) -> bytes:
    """The bytes of one signed Mailgun `delivered` event for `recipient` of `notification_id` (HTTP/1.1)."""
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    digest = hmac.new(SIGNING_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    event = {
        "id": secrets.token_hex(11),
        "timestamp": time.time(),
        "event": "delivered",
        "recipient": recipient,
        "delivery-status": {"code": 250, "message": "OK"},
        "user-variables": {"notification_id": notification_id},
    }
    body = json.dumps(
        {"signature": {"timestamp": stamp, "token": token, "signature": digest}, "event-data": event}
    )
    head = (
        f"POST /webhooks/mailgun HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.encode()


async def post_all(port: int, requests: list[bytes], concurrency: int) -> None:
    """Send `requests` over `concurrency` keep-alive connections; each must be answered 200."""
    pending = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for data in pending:
                status, answer = await http_exchange(reader, writer, data)
                if not status.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(
                        f"POST /webhooks/... answered {status.decode().strip()}: {answer.decode()}"
                    )
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))


class Store:
    """The project's own store API on the service's database, from this process."""

    def __init__(self, project: Project, url: str) -> None:
        self._module = importlib.import_module(f"{project.package}.store")
        self.store = self._module.NotificationStore(self._module.open_engine(url))

    async def add(self, client: str, recipients_per: int, addresses: list[str]) -> list[str]:
        """One notification per `recipients_per` addresses, as `client`; returns their ids."""
        notifications = self.store.for_client(client)
        groups = [
            addresses[start : start + recipients_per] for start in range(0, len(addresses), recipients_per)
        ]
        ids = [secrets.token_hex(16) for _ in groups]

        async def add(notification_id: str, group: list[str]) -> None:
            content = {"to": group, "cc": [], "subject": "Your weekly digest", "body": BODY, "format": "text"}
            await notifications.add(notification_id, content, group)

        for start in range(0, len(groups), 500):
            await asyncio.gather(
                *(
                    add(i, g)
                    for i, g in zip(ids[start : start + 500], groups[start : start + 500], strict=True)
                )
            )
        return ids

    async def finished(self, client: str) -> int:
        from sqlalchemy import func, select

        table = self._module.NotificationRecord
        query = select(func.count()).where(
            table.client == client, table.status.in_(["sent", "suppressed", "failed"])
        )
        async with self.store.engine.connect() as connection:
            return int(await connection.scalar(query) or 0)

    async def suppress(self, addresses: list[str]) -> None:
        for address in addresses:
            await self.store.suppressions.add_suppression(address, "hard_bounce")


async def sending_run(
    store: Store, sink: Sink, name: str, args: argparse.Namespace, suppressed: int
) -> dict[str, float]:
    """Seconds to finish a list of `--addresses` notifications' recipients, `suppressed` of them suppressed."""
    addresses = [f"{name}-{number}@example.com" for number in range(args.addresses)]
    await store.suppress(addresses[:: args.addresses // suppressed][:suppressed] if suppressed else [])
    before = sink.received
    started = time.perf_counter()
    ids = await store.add(name, args.per_notification, addresses)
    while await store.finished(name) < len(ids):
        if time.perf_counter() - started > 600:
            raise SystemExit(f"{name}: not finished in 600 s")
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    sent = sink.received - before
    expected = len(ids) if args.per_notification > 1 else args.addresses - suppressed
    if sent != expected:
        raise SystemExit(f"{name}: the SMTP server got {sent} messages, not {expected}")
    return {"seconds": seconds, "messages": sent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="webhook events per round (default 5000)")
    parser.add_argument("--addresses", type=int, default=10_000, help="addresses of the list (default 10000)")
    parser.add_argument("--suppressed", type=int, default=1000, help="of them suppressed (default 1000)")
    parser.add_argument(
        "--per-notification", type=int, default=1, help="recipients per notification (default 1)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median counts (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    with workspace("oscis-bench-feedback-") as directory, contextlib.ExitStack() as stack:
        project = render_project(directory / "render")
        tls = make_tls(directory)
        sink = stack.enter_context(Sink(tls))
        url = f"sqlite+aiosqlite:///{directory / 'store.db'}"
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        sendgrid_key = ec.generate_private_key(ec.SECP256R1())
        public = sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        env = {
            **os.environ,
            **mail_env(sink, tls),
            "API_KEYS": API_KEY,
            "PYTHONPATH": str(project.src),
            "DATABASE_URL": url,
            "WEBHOOK_MAILGUN_SIGNING_KEY": SIGNING_KEY,
            "WEBHOOK_SENDGRID_PUBLIC_KEY": base64.b64encode(public).decode(),
            "MAX_RECIPIENTS": "1000",
            "DELIVERY_POLL_INTERVAL": "0.05",
        }
        migrate(project, env, directory / "migrate.log")
        port, _ = stack.enter_context(
            serving(f"{project.package}.main:create_app", env, directory / "service.log")
        )
        store = Store(project, url)
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)

        recipients = [f"reader{number}@example.com" for number in range(WEBHOOK_NOTIFICATIONS)]
        ids = loop.run_until_complete(store.add("webhooks", 1, recipients))
        sink.wait_for(WEBHOOK_NOTIFICATIONS, timeout=60)
        webhooks = importlib.import_module(f"{project.package}.feedback.webhooks")
        settings = webhooks.WebhookSettings()
        unique_args = [
            json.loads(webhooks.tracking_headers("sendgrid", i, settings)["X-SMTPAPI"])["unique_args"]
            for i in ids
        ]
        events: list[float] = []
        batched: list[float] = []
        sending: dict[str, list[float]] = {"none": [], "suppressed": []}
        for round_number in range(args.rounds):
            requests = [
                mailgun_request(port, ids[n % len(ids)], recipients[n % len(ids)]) for n in range(args.events)
            ]
            started = time.perf_counter()
            loop.run_until_complete(post_all(port, requests, args.concurrency))
            events.append(args.events / (time.perf_counter() - started))
            requests = [
                sendgrid_request(port, sendgrid_key, unique_args, recipients, SENDGRID_BATCH)
                for _ in range(args.events // SENDGRID_BATCH)
            ]
            started = time.perf_counter()
            loop.run_until_complete(post_all(port, requests, 4))
            batched.append(len(requests) * SENDGRID_BATCH / (time.perf_counter() - started))
            for variant, count in (("none", 0), ("suppressed", args.suppressed)):
                run = loop.run_until_complete(
                    sending_run(store, sink, f"r{round_number}-{variant}", args, count)
                )
                sending[variant].append(run["seconds"])
        loop.run_until_complete(store.store.aclose())

    none, suppressed = statistics.median(sending["none"]), statistics.median(sending["suppressed"])
    results: dict[str, Any] = {
        "webhook_events_per_second": statistics.median(events),
        "webhook_events_per_second_range": [min(events), max(events)],
        "sendgrid_batched_events_per_second": statistics.median(batched),
        "sending_seconds_none_suppressed": none,
        "sending_seconds_with_suppressed": suppressed,
        "suppression_cost": suppressed / none - 1,
        "sending_runs": sending,
        "addresses": args.addresses,
        "suppressed": args.suppressed,
        "per_notification": args.per_notification,
    }
    missed = []
    if results["webhook_events_per_second"] < TARGET_EVENTS_PER_SECOND:
        missed.append(
            f"webhook events/s {results['webhook_events_per_second']:.0f} < {TARGET_EVENTS_PER_SECOND:.0f}"
        )
    if results["suppression_cost"] > TARGET_SUPPRESSION_COST:
        missed.append(f"suppression cost {results['suppression_cost']:+.1%} > {TARGET_SUPPRESSION_COST:+.0%}")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        low, high = results["webhook_events_per_second_range"]
        print(
            f"POST /webhooks/mailgun, one event per request (SQLite): {results['webhook_events_per_second']:.0f} "
            f"events/s (range {low:.0f} to {high:.0f}; target >= 1000)"
        )
        print(
            f"POST /webhooks/sendgrid, {SENDGRID_BATCH} events per request: "
            f"{results['sendgrid_batched_events_per_second']:.0f} events/s"
        )
        print(
            f"{args.addresses} addresses ({args.per_notification} per notification): {none:.2f} s with none suppressed, "
            f"{suppressed:.2f} s with {args.suppressed} suppressed: {results['suppression_cost']:+.1%} (target <= +10 %)"
        )
        for line in missed:
            print(f"MISSED: {line}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
