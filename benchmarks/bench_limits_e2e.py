"""End to end with the sending limits wired in: what MAIL_RATE_LIMIT costs when no limit is reached.

The rendered project (background delivery, SQLite store) runs twice under uvicorn against the same
counting sink: once without sending limits, once with limits of the office365 preset's shape (messages
per minute and per day, recipients per day: three moving windows counted in the store's database)
scaled up so that none is reached. The clock runs from the first POST until the sink has received
every message (`bench_e2e.measure`); rounds alternate between the two and the median counts. The
target: the limits cost under 5 % of the delivered rate. Run with the template's virtualenv:

    .venv/bin/python benchmarks/bench_limits_e2e.py [--notifications 1000] [--rounds 5] [--json] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys

from bench_e2e import measure, migrate, serving
from common import Sink, mail_env, make_tls, render_project, workspace

API_KEY = "bench-api-key-0123456789"  # pragma: allowlist secret - the benchmark apps' throwaway key
LIMITS = {"MAIL_RATE_LIMIT": "1000000/minute,100000000/day", "MAIL_RECIPIENT_RATE_LIMIT": "100000000/day"}
TARGET_COST = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notifications", type=int, default=1000, help="notifications per run (default 1000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="runs of each; the median counts (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()

    with workspace("oscis-bench-limits-e2e-") as directory, contextlib.ExitStack() as stack:
        project = render_project(directory / "render")
        tls = make_tls(directory)
        sink = stack.enter_context(Sink(tls))
        env = {**os.environ, **mail_env(sink, tls), "API_KEYS": API_KEY, "PYTHONPATH": str(project.src)}
        apps = {
            "no-limits": {**env, "DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'none.db'}"},
            "limits-not-reached": {
                **env,
                **LIMITS,
                "DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'on.db'}",
            },
        }
        for name, app_env in apps.items():
            migrate(project, app_env, directory / f"{name}-migrate.log")
        servers = {
            name: stack.enter_context(
                serving(f"{project.package}.main:create_app", app_env, directory / f"{name}.log")
            )
            for name, app_env in apps.items()
        }
        samples: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):  # alternating, so that load from elsewhere hits both alike
            for name, (port, _) in servers.items():
                samples[name].append(
                    measure(sink, port, args.notifications, args.concurrency)["delivered_per_s"]
                )
    rates = {name: statistics.median(runs) for name, runs in samples.items()}
    cost = 1 - rates["limits-not-reached"] / rates["no-limits"]
    if args.json:
        print(
            json.dumps(
                {
                    "notifications": args.notifications,
                    "rounds": args.rounds,
                    "delivered_per_s": rates,
                    "samples": samples,
                    "cost": cost,
                },
                indent=2,
            )
        )
    else:
        print(
            f"{args.notifications} notifications, {args.concurrency} concurrent clients, POST to delivered (SQLite)"
        )
        for name, rate in rates.items():
            print(f"  {name:<20} {rate:7.1f} delivered/s")
        print(
            f"  the limits cost {cost:+.1%} of the delivered rate (target < {TARGET_COST:.0%}; negative: noise)"
        )
    return 1 if args.check and cost >= TARGET_COST else 0


if __name__ == "__main__":
    sys.exit(main())
