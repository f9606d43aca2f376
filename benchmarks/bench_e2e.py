"""End to end: POST /notifications until every email reached the SMTP server, in notifications/s.

Two apps, each run by uvicorn in a subprocess on a free loopback port, against the same counting
STARTTLS + AUTH sink (its own process, see common.py):

- service: the rendered project (`<package>.main:create_app`: pooled Mailer, background delivery);
- naive: BackgroundTasks + FastMail.send_message per notification (naive_app.py).

The clock runs from the first POST until the sink has received every message; rounds alternate
between the apps and the median counts. Run with the template's virtualenv:

    .venv/bin/python benchmarks/bench_e2e.py [--notifications 300] [--rounds 3] [--concurrency 16]
                                             [--json] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from common import BODY, Sink, free_port, mail_env, make_tls, render_project, workspace

API_KEY = "bench-api-key-0123456789"  # pragma: allowlist secret - the benchmark apps' throwaway key
TARGET_VS_NAIVE = 10.0
BENCHMARKS = Path(__file__).resolve().parent


@contextlib.contextmanager
def serving(app: str, env: dict[str, str], log: Path) -> Iterator[int]:
    """Run `uvicorn --factory app` until the block ends; yields its port once /health answers."""
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
        yield port
    finally:
        process.terminate()
        process.wait(30)


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def request(port: int, number: int) -> bytes:
    """The bytes of one POST /notifications (HTTP/1.1, keep-alive)."""
    body = json.dumps({"to": [f"user{number}@example.com"], "subject": f"#{number}", "body": BODY}).encode()
    head = (
        f"POST /notifications HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def post_notifications(port: int, count: int, concurrency: int) -> None:
    """POST `count` distinct notifications over `concurrency` keep-alive connections; each must get 202.

    A bare asyncio client: a full HTTP library would cost more CPU than the server it measures.
    """
    requests = iter([request(port, number) for number in range(count)])

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for data in requests:
                writer.write(data)
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                if not status.startswith(b"HTTP/1.1 202"):
                    raise SystemExit(
                        f"POST /notifications answered {status.decode().strip()}: {answer.decode()}"
                    )
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))


def measure(sink: Sink, port: int, count: int, concurrency: int) -> dict[str, float]:
    """Notifications per second accepted (202) and delivered (at the sink)."""
    before = sink.received
    started = time.perf_counter()
    asyncio.run(post_notifications(port, count, concurrency))
    accepted = time.perf_counter()
    delivered = sink.wait_for(before + count, timeout=120 + count / 5)
    return {"accepted_per_s": count / (accepted - started), "delivered_per_s": count / (delivered - started)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=300, help="notifications per run (default 300)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each app; the median counts (default 3)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target ratio is missed")
    args = parser.parse_args()

    with workspace("oscis-bench-e2e-") as directory, contextlib.ExitStack() as stack:
        project = render_project(directory / "render")
        tls = make_tls(directory)
        sink = stack.enter_context(Sink(tls))
        env = {**os.environ, **mail_env(sink, tls), "API_KEYS": API_KEY}
        apps = {
            "service": (f"{project.package}.main:create_app", project.src),
            "naive": ("naive_app:create_app", BENCHMARKS),
        }
        ports = {
            name: stack.enter_context(
                serving(app, {**env, "PYTHONPATH": str(path)}, directory / f"{name}.log")
            )
            for name, (app, path) in apps.items()
        }
        # Rounds alternate between the apps so that load from elsewhere hits both alike.
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, port in ports.items():
                samples[name].append(measure(sink, port, args.notifications, args.concurrency))
    results = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in samples.items()
    }

    ratio = results["service"]["delivered_per_s"] / results["naive"]["delivered_per_s"]
    if args.json:
        report = {"notifications": args.notifications, "rounds": args.rounds, "concurrency": args.concurrency}
        print(json.dumps({**report, "results": results, "service_vs_naive": ratio}, indent=2))
    else:
        print(f"{args.notifications} notifications, {args.concurrency} concurrent clients, POST to delivered")
        for name, result in results.items():
            print(
                f"  {name:<8} {result['delivered_per_s']:7.1f} delivered/s "
                f"({result['accepted_per_s']:7.1f} accepted/s)"
            )
        print(f"  service / naive: {ratio:.1f}x (target >= {TARGET_VS_NAIVE:.0f}x)")
    return 1 if args.check and ratio < TARGET_VS_NAIVE else 0


if __name__ == "__main__":
    raise SystemExit(main())
