"""The rate limiter's own cost when no limit is reached, per message, on SQLite, PostgreSQL and Redis.

Renders the template with delivery=celery (whose limits can live in Redis as well as in the store's
database), migrates a throwaway store on each database, and times in this process, one call after
the other, what delivery and the API ask of the limits:

- per message: `SendGate.admit([1])`, as a Celery task sending the one notification it claimed (the
  gate reads the windows at most once a second, `gate.FRESH`, so an admission is mostly one write);
- per batch of 16: `allowance()` then `admit([1] * 16)`, as the in-process dispatcher asking before it
  claims a batch (the cost is given per message);
- per request: `ApiLimiter.hit()` for API_RATE_LIMIT.

The sending limits have the shape of the office365 preset's (messages per minute and per day,
recipients per day: three moving windows), scaled up so that none is reached. The cost per message
is set against the time one message takes end to end at the service's measured throughput (README
"Measurements": 300 notifications/s on SQLite, 238 on PostgreSQL, the low ends), the budget being
5 % of it. Run with the template's virtualenv:

    .venv/bin/python benchmarks/bench_limits.py [--messages 2000] [--rounds 5] [--json] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from importlib import import_module
from pathlib import Path
from typing import Any

from common import Project, render_project, workspace

MESSAGES = "1000000/minute, 100000000/day"
RECIPIENTS = "100000000/day"
API = "1000000/minute"
BATCH = 16
END_TO_END_PER_S = {"sqlite": 300.0, "postgresql": 238.0, "redis": 300.0}
"""The service's measured throughput (README), the low end; Redis (the Celery delivery) is set against SQLite's."""
TARGET_SHARE = 0.05


def start_servers(
    project: Project, directory: Path, stack: contextlib.ExitStack
) -> dict[str, dict[str, str]]:
    """Each backend's (database URL, Redis URL): a SQLite file, a throwaway PostgreSQL and redis-server when
    installed (the rendered project's test helpers)."""
    sys.path.insert(0, str(project.path))
    from tests.postgres import postgres_bin, running_postgres
    from tests.redis_server import RedisServer

    sqlite = f"sqlite+aiosqlite:///{directory / 'limits.db'}"
    backends = {"sqlite": {"database": sqlite, "redis": ""}}
    binaries = postgres_bin()
    if binaries is None:
        print("PostgreSQL is not installed: skipping it", file=sys.stderr)
    else:
        backends["postgresql"] = {
            "database": stack.enter_context(running_postgres(binaries)).database(),
            "redis": "",
        }
    executable = shutil.which("redis-server")
    if executable is None:
        print("redis-server is not installed: skipping Redis", file=sys.stderr)
    else:
        redis = RedisServer(executable, directory)
        redis.start()
        stack.callback(redis.stop)
        backends["redis"] = {"database": sqlite, "redis": redis.url}
    return backends


async def measure(project: Project, backend: dict[str, str], messages: int) -> dict[str, float]:
    """Microseconds per message (one at a time, and in batches) and per API request, on `backend`."""
    gate_module, pacing, sending, settings, api, storage_module = (
        import_module(f"{project.package}.ratelimit.{name}")
        for name in ("gate", "pacing", "sending", "settings", "api", "storage")
    )
    store = import_module(f"{project.package}.store")

    engine = store.open_engine(backend["database"])
    storage = storage_module.shared_storage(engine, backend["redis"] or None)
    try:

        def gate() -> Any:
            limiter = sending.SendLimiter(
                storage,
                settings.parse_limits(MESSAGES),
                settings.parse_limits(RECIPIENTS),
                f"bench:{uuid.uuid4().hex}",
            )
            return gate_module.SendGate(pacing.Pacer("bench"), limiter)

        async def per_message(batch: int) -> float:
            sender = gate()
            for _ in range(10):  # warm: connections open, scripts loaded
                await sender.admit([1] * batch)
            started = time.perf_counter()
            for _ in range(messages // batch):
                if batch > 1:
                    await sender.allowance()
                admission = await sender.admit([1] * batch)
                assert admission.admitted == batch, "a limit was reached: raise the bench's limits"
            return (time.perf_counter() - started) / (messages // batch * batch) * 1e6

        async def per_request() -> float:
            limiter = api.ApiLimiter(API)
            limiter.bind(storage)
            fingerprint = uuid.uuid4().hex[:16]
            started = time.perf_counter()
            for _ in range(messages):
                assert await limiter.hit(fingerprint) is None
            return (time.perf_counter() - started) / messages * 1e6

        return {
            "one_us": await per_message(1),
            "batch_us": await per_message(BATCH),
            "api_us": await per_request(),
        }
    finally:
        await storage_module.close_storage(storage)
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages (and requests) per round")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds per backend; the median counts (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a backend misses the 5 % budget")
    args = parser.parse_args()

    with workspace("oscis-bench-limits-") as directory, contextlib.ExitStack() as stack:
        project = render_project(directory / "render", delivery="celery")
        sys.path.insert(0, str(project.path))
        from tests.conftest import migrate  # the rendered project's: what `migrate` runs

        backends = start_servers(project, directory, stack)
        load_before = os.getloadavg()[0]
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
        for _ in range(args.rounds):  # rounds alternate between backends, so other load hits each alike
            for name, backend in backends.items():
                migrate(backend["database"])
                samples[name].append(asyncio.run(measure(project, backend, args.messages)))
        load_after = os.getloadavg()[0]
    results: dict[str, dict[str, float]] = {}
    for name, runs in samples.items():
        result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        budget_us = 1e6 / END_TO_END_PER_S[name]
        result["share_one"] = result["one_us"] / budget_us
        result["share_batch"] = result["batch_us"] / budget_us
        results[name] = result
    if args.json:
        print(json.dumps({"messages": args.messages, "rounds": args.rounds, "results": results}, indent=2))
    else:
        print(
            f"limiter cost, no limit reached ({args.rounds} rounds of {args.messages}; load {load_before:.1f} -> {load_after:.1f})"
        )
        for name, result in results.items():
            print(
                f"  {name:<10} one at a time {result['one_us']:7.0f} us/message ({result['share_one']:5.1%} of end to end), "
                f"batches of {BATCH} {result['batch_us']:6.0f} us/message ({result['share_batch']:5.1%}), "
                f"API {result['api_us']:6.0f} us/request"
            )
    missed = any(result["share_batch"] > TARGET_SHARE for result in results.values())
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
