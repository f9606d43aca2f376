"""End to end: POST /notifications until every email reached the SMTP server, in notifications/s.

Apps, each run by uvicorn in a subprocess on a free loopback port, against the same counting
STARTTLS + AUTH sink (its own process, see common.py):

- service-sqlite: the rendered project (`<package>.main:create_app`: pooled Mailer, background
  delivery) with its default durable store, a SQLite file (WAL);
- service-postgresql: the same on PostgreSQL (a throwaway server, when PostgreSQL is installed);
- service-sqlite-metrics-off: service-sqlite with METRICS_ENABLED=false (no counting, no /metrics),
  for the cost of the Prometheus metrics, which service-sqlite counts (and a scrape reads once a run);
- naive: BackgroundTasks + FastMail.send_message per notification (naive_app.py);
- send_many: no HTTP, no store: the project's `Mailer` pool as `send_many` uses it (this process, uvloop
  like the services, a warm pool) sends the very emails the service composes for the same notifications
  (its `Composer`: the same MIME and inline parts, the same size), the pool's own rate. POST to delivered / send_many is the
  share of the pool's rate that the durable path keeps, the figure that holds across machines.

The clock runs from the first POST (or the first message handed to send_many) until the sink has
received every message; rounds alternate between the apps and the median counts, each with the load
average (1 minute) when it ran. Then, on the SQLite service: the latency of
`GET /notifications/{id}`, and the service's memory (RSS) with 10,000 notifications accepted
while the SMTP server is down. Run with the template's virtualenv:

    .venv/bin/python benchmarks/bench_e2e.py [--notifications 300] [--rounds 3] [--concurrency 16]
                                             [--backlog 10000] [--json] [--check]
                                             [--template PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import common
from common import (
    BODY,
    PASSWORD,
    SENDER,
    USERNAME,
    Project,
    Sink,
    Tls,
    free_port,
    http_exchange,
    mail_env,
    make_tls,
    render_project,
    workspace,
)

API_KEY = "bench-api-key-0123456789"  # pragma: allowlist secret - the benchmark apps' throwaway key
TARGET_VS_NAIVE = 10.0
TARGET_VS_SEND_MANY = 0.6
"""The durable SQLite service, POST to delivered, keeps at least this share of send_many's rate."""
TARGETS_VS_NAIVE = ("service-sqlite", "service-postgresql")
TARGET_BACKLOG_MB = 50.0
TARGET_METRICS_COST = 0.05
"""Metrics on may cost at most 5 % of the delivered rate with metrics off."""
BENCHMARKS = Path(__file__).resolve().parent


@contextlib.contextmanager
def serving(app: str, env: dict[str, str], log: Path) -> Iterator[tuple[int, int]]:
    """Run `uvicorn --factory app` until the block ends; yields (port, pid) once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, cwd=log.parent, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{app} did not start; its log:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(30)


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def migrate(project: Project, env: dict[str, str], log: Path) -> None:
    """Create the store at env's DATABASE_URL with the project's own command."""
    command = [sys.executable, "-m", project.package, "migrate"]
    subprocess.run(
        command, env=env, cwd=log.parent, check=True, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid`, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc")


def lookup_latency(base_url: str, ids: list[str], count: int = 500) -> dict[str, float]:
    """Median and 99th percentile of GET /notifications/{id}, in ms (one keep-alive client)."""
    import httpx

    timings = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        for number in range(count):
            started = time.perf_counter()
            response = client.get(f"/notifications/{ids[number % len(ids)]}")
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    timings.sort()
    return {"median_ms": statistics.median(timings), "p99_ms": timings[int(len(timings) * 0.99) - 1]}


def scrape(port: int) -> None:
    """GET /metrics once, as Prometheus would between runs (it reads the backlog from the store)."""
    query = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(query, timeout=10) as answer:
        answer.read()


def request(port: int, number: int) -> bytes:
    """The bytes of one POST /notifications (HTTP/1.1, keep-alive)."""
    body = json.dumps({"to": [f"user{number}@example.com"], "subject": f"#{number}", "body": BODY}).encode()
    head = (
        f"POST /notifications HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def post_notifications(port: int, count: int, concurrency: int) -> list[str]:
    """POST `count` distinct notifications over `concurrency` keep-alive connections; each must get 202.
    Returns the ids. A bare asyncio client: a full HTTP library would cost more CPU than the server it measures.
    """
    requests = iter([request(port, number) for number in range(count)])
    ids: list[str] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for data in requests:
                status, answer = await http_exchange(reader, writer, data)
                if not status.startswith(b"HTTP/1.1 202"):
                    raise SystemExit(
                        f"POST /notifications answered {status.decode().strip()}: {answer.decode()}"
                    )
                ids.append(json.loads(answer)["id"])
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return ids


def measure(sink: Sink, port: int, count: int, concurrency: int) -> dict[str, float]:
    """Notifications per second accepted (202) and delivered (at the sink)."""
    before = sink.received
    started = time.perf_counter()
    asyncio.run(post_notifications(port, count, concurrency))
    accepted = time.perf_counter()
    delivered = sink.wait_for(before + count, timeout=120 + count / 5)
    return {"accepted_per_s": count / (accepted - started), "delivered_per_s": count / (delivered - started)}


def send_many_rate(project: Project, sink: Sink, tls: Tls, count: int) -> dict[str, float]:
    """Messages per second of the project's `Mailer` pool to the sink, sending the emails the service composes
    for `count` notifications like those `post_notifications` posts (their inline parts too), as
    `send_many` does: MAIL_POOL_SIZE workers over one warm pool."""
    package = project.package
    mail = importlib.import_module(f"{package}.mail")
    notifications = importlib.import_module(f"{package}.notifications")
    message_settings = importlib.import_module(f"{package}.notifications.settings").MessageSettings()
    service_name = importlib.import_module(package).SERVICE_NAME
    composer = notifications.Composer.load(message_settings, service_name=service_name, sender=SENDER)
    settings = mail.MailSettings(
        server="localhost",
        port=sink.port,
        username=USERNAME,
        password=PASSWORD,
        MAIL_FROM=SENDER,
        starttls=True,
        ssl_tls=False,
        cert_bundle=tls.ca_file,
        timeout=10,
    )
    emails = [
        composer.compose(
            notifications.Notification(
                id=uuid.uuid4().hex, to=[f"user{number}@example.com"], subject=f"#{number}", body=BODY
            )
        )
        for number in range(count)
    ]

    async def send_all(mailer: Any, batch: list[Any]) -> None:
        queue = iter(batch)  # send_many's workers, with each email's parts (send_many takes none)

        async def worker() -> None:
            for email in queue:
                await mailer.send(email.message, attachments=email.parts)

        await asyncio.gather(*(worker() for _ in range(settings.pool_size)))

    async def run() -> float:
        async with mail.Mailer(settings) as mailer:
            await send_all(mailer, emails[: settings.pool_size])  # warm: the service's pool is open too
            started = time.perf_counter()
            await send_all(mailer, emails)
            return time.perf_counter() - started

    elapsed = run_loop(run())
    return {"delivered_per_s": count / elapsed, "accepted_per_s": count / elapsed}


def run_loop(main: Coroutine[Any, Any, float]) -> float:
    """`main` on uvloop when installed (as uvicorn runs the services), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def backlog_memory(project: Project, env: dict[str, str], directory: Path, count: int) -> dict[str, float]:
    """RSS of the service idle, then with `count` notifications accepted while nothing listens on MAIL_PORT."""
    env = {
        **env,
        "MAIL_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'backlog.db'}",
    }
    migrate(project, env, directory / "backlog-migrate.log")
    with serving(f"{project.package}.main:create_app", env, directory / "backlog.log") as (port, pid):
        asyncio.run(post_notifications(port, 50, 4))  # warm up: imports, pools, caches
        time.sleep(2)
        idle = rss_mb(pid)
        asyncio.run(post_notifications(port, count, 16))
        time.sleep(5)  # the dispatcher has claimed and retried its share by now
        loaded = rss_mb(pid)
    return {"idle_mb": idle, "loaded_mb": loaded, "above_idle_mb": loaded - idle}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=300, help="notifications per run (default 300)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each app; the median counts (default 3)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument(
        "--backlog", type=int, default=10_000, help="notifications accepted while SMTP is down"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--template", type=Path, default=common.TEMPLATE, help="the template to render (default: this one)"
    )
    args = parser.parse_args()
    common.TEMPLATE = args.template.resolve()

    with workspace("oscis-bench-e2e-") as directory, contextlib.ExitStack() as stack:
        project = render_project(directory / "render")
        tls = make_tls(directory)
        sink = stack.enter_context(Sink(tls))
        env = {**os.environ, **mail_env(sink, tls), "API_KEYS": API_KEY, "PYTHONPATH": str(project.src)}
        databases = {"service-sqlite": f"sqlite+aiosqlite:///{directory / 'store.db'}"}
        postgres = start_postgres(project, stack)
        if postgres is not None:
            databases["service-postgresql"] = postgres
        databases["service-sqlite-metrics-off"] = f"sqlite+aiosqlite:///{directory / 'store-off.db'}"
        apps = {
            name: (
                f"{project.package}.main:create_app",
                {
                    **env,
                    "DATABASE_URL": url,
                    "METRICS_ENABLED": str(not name.endswith("-metrics-off")).lower(),
                },
            )
            for name, url in databases.items()
        }
        apps["naive"] = ("naive_app:create_app", {**env, "PYTHONPATH": str(BENCHMARKS)})
        for name in databases:
            migrate(project, apps[name][1], directory / f"{name}-migrate.log")
        servers = {
            name: stack.enter_context(serving(app, app_env, directory / f"{name}.log"))
            for name, (app, app_env) in apps.items()
        }
        # Rounds alternate between the apps so that load from elsewhere hits both alike.
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in [*apps, "send_many"]}
        for _ in range(args.rounds):
            for name, (port, _) in servers.items():
                load = os.getloadavg()[0]
                samples[name].append(
                    {**measure(sink, port, args.notifications, args.concurrency), "load": load}
                )
                if apps[name][1].get("METRICS_ENABLED") == "true":
                    scrape(port)
            load = os.getloadavg()[0]
            samples["send_many"].append(
                {**send_many_rate(project, sink, tls, args.notifications), "load": load}
            )
        sqlite_port = servers["service-sqlite"][0]
        ids = asyncio.run(post_notifications(sqlite_port, 100, 4))
        lookup = lookup_latency(f"http://127.0.0.1:{sqlite_port}", ids)
        memory = backlog_memory(project, env, directory, args.backlog)
    results = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in samples.items()
    }

    ratios = {
        name: results[name]["delivered_per_s"] / results["naive"]["delivered_per_s"] for name in databases
    }
    pool_shares = {
        name: results[name]["delivered_per_s"] / results["send_many"]["delivered_per_s"] for name in databases
    }
    metrics_cost = 1 - (
        results["service-sqlite"]["delivered_per_s"]
        / results["service-sqlite-metrics-off"]["delivered_per_s"]
    )
    if args.json:
        report = {"notifications": args.notifications, "rounds": args.rounds, "concurrency": args.concurrency}
        summary = {
            "results": results,
            "vs_naive": ratios,
            "vs_send_many": pool_shares,
            "metrics_cost": metrics_cost,
            "lookup": lookup,
            "backlog": memory,
        }
        print(json.dumps({**report, **summary}, indent=2))
    else:
        print(f"{args.notifications} notifications, {args.concurrency} concurrent clients, POST to delivered")
        for name, result in results.items():
            print(
                f"  {name:<26} {result['delivered_per_s']:7.1f} delivered/s "
                f"({result['accepted_per_s']:7.1f} accepted/s), load average {result['load']:.2f}"
            )
        for name, ratio in ratios.items():
            target = f" (target >= {TARGET_VS_NAIVE:.0f}x)" if name in TARGETS_VS_NAIVE else ""
            print(f"  {name} / naive: {ratio:.1f}x{target}")
        for name, share in pool_shares.items():
            target = f" (target >= {TARGET_VS_SEND_MANY})" if name == "service-sqlite" else ""
            print(f"  {name} / send_many: {share:.2f}{target}")
        print(
            f"  metrics on vs off: {metrics_cost:+.1%} of the delivered rate "
            f"(target <= {TARGET_METRICS_COST:.0%}; negative: on was faster, i.e. noise)"
        )
        print(
            f"  GET /notifications/{{id}}: median {lookup['median_ms']:.2f} ms, p99 {lookup['p99_ms']:.2f} ms"
        )
        print(
            f"  {args.backlog} accepted while SMTP is down: {memory['loaded_mb']:.0f} MB RSS, "
            f"{memory['above_idle_mb']:.1f} MB above idle (target < {TARGET_BACKLOG_MB:.0f} MB)"
        )
    missed = (
        any(ratios.get(name, TARGET_VS_NAIVE) < TARGET_VS_NAIVE for name in TARGETS_VS_NAIVE)
        or pool_shares["service-sqlite"] < TARGET_VS_SEND_MANY
        or memory["above_idle_mb"] >= TARGET_BACKLOG_MB
        or metrics_cost > TARGET_METRICS_COST
    )
    return 1 if args.check and missed else 0


def start_postgres(project: Project, stack: contextlib.ExitStack) -> str | None:
    """A throwaway PostgreSQL server (the rendered project's test helper) and a database URL; None if absent."""
    sys.path.insert(0, str(project.path))
    from tests.postgres import postgres_bin, running_postgres  # the rendered project's tests package

    binaries = postgres_bin()
    if binaries is None:
        print("PostgreSQL is not installed: skipping service-postgresql", file=sys.stderr)
        return None
    server = stack.enter_context(running_postgres(binaries))
    return server.database()


if __name__ == "__main__":
    raise SystemExit(main())
