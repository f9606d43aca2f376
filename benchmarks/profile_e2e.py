"""CPU microseconds per notification by stage, POST to delivered, the service run in this process under timing hooks.

The rendered service (defaults: background delivery, METRICS_ENABLED) runs in this process under
uvicorn with the plain asyncio loop, whose callbacks can be timed (uvloop's cannot); the HTTP
clients run in a child process and the counting STARTTLS sink in another (common.py), so only the
service's CPU is counted. Every callback of the event loop is timed with the thread's CPU clock and
charged to a stage: the stage a hooked function of the service set while it runs (a context
variable, so a coroutine keeps its stage across awaits), else what the callback belongs to (uvicorn:
HTTP, TLS and aiosmtplib: SMTP, the database driver). SQLite statements run on aiosqlite's threads:
each is timed there and charged to the stage that issued it.

    .venv/bin/python benchmarks/profile_e2e.py [--notifications 2000] [--concurrency 16]
                                               [--database sqlite|postgresql] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import functools
import importlib
import inspect
import json
import os
import pstats
import resource
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from bench_e2e import API_KEY, BENCHMARKS, migrate, start_postgres
from common import Sink, free_port, mail_env, make_tls, render_project, workspace

STAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("stage", default=None)
HTTP, INSERT, CLAIM, MIME, SMTP, OUTCOME = (
    "HTTP + validation",
    "insert + commit",
    "claim",
    "MIME build",
    "SMTP",
    "outcome write",
)
DISPATCH, LEASE, DRIVER, LOOP, OTHER = (
    "dispatch (tasks, bookkeeping)",
    "lease renewal",
    "database driver (not split)",
    "event loop (poll, scheduling)",
    "other callbacks",
)
HOOKS = {
    # module (under the package), class or None, function: stage
    ("store.repository", "ClientNotifications", "add"): INSERT,
    ("store.repository", "NotificationStore", "_insert"): INSERT,
    ("store.repository", "NotificationStore", "claim"): CLAIM,
    ("store.repository", "NotificationStore", "claim_due"): CLAIM,
    ("store.repository", "NotificationStore", "record"): OUTCOME,
    ("store.repository", "NotificationStore", "record_many"): OUTCOME,
    ("store.repository", "NotificationStore", "_update"): OUTCOME,
    ("store.repository", "NotificationStore", "extend"): LEASE,
    ("store.repository", "NotificationStore", "extend_many"): LEASE,
    ("delivery.dispatcher", None, "to_message"): MIME,
    ("notifications.compose", "Composer", "compose"): MIME,
    ("mail.core.message", "MessageBuilder", "build"): MIME,
    ("mail.core.mailer", "SmtpMailer", "send"): SMTP,
}
MODULE_STAGES = [
    (("uvicorn", "starlette", "fastapi", "httptools", "h11"), HTTP),
    (("sslproto", "aiosmtplib", "/mail/"), SMTP),
    (("asyncpg", "aiosqlite", "sqlalchemy"), DRIVER),
    (("/delivery/",), DISPATCH),
]


class Meter:
    """CPU seconds per stage: the loop thread's by stage switches, other threads' by `add`."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        """Calls of each hooked function (transactions per notification, for the store's)."""
        self.threads: dict[str, float] = defaultdict(float)
        """The part of `totals` charged from other threads (aiosqlite's)."""
        self.stage: str | None = None
        self.default = OTHER
        self.mark = time.thread_time()
        self.loop_thread = threading.get_ident()
        self.added = 0.0
        """CPU seconds charged from other threads (aiosqlite's)."""
        self._lock = threading.Lock()

    def switch(self, stage: str | None) -> None:
        now = time.thread_time()
        if self.stage is not None:
            self.totals[self.stage] += now - self.mark
        self.stage, self.mark = stage, now

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.totals[stage] += seconds
            self.threads[stage] += seconds
            self.added += seconds

    def reset(self) -> None:
        with self._lock:
            self.totals.clear()
            self.calls.clear()
            self.threads.clear()
            self.added = 0.0


METER = Meter()


def by_origin(origin: str) -> str:
    for needles, stage in MODULE_STAGES:
        if any(needle in origin for needle in needles):
            return stage
    return OTHER


def classify(callback: Any) -> str:
    """The stage of a loop callback that no hooked function runs in."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None)
        return by_origin(code.co_filename if code else type(coro).__module__)
    protocol = getattr(owner, "_protocol", None)
    if protocol is not None:
        return by_origin(type(protocol).__module__)
    if owner is not None:
        return by_origin(type(owner).__module__)
    return by_origin(getattr(callback, "__module__", "") or "")


def staged(function: Callable[..., Any], stage: str) -> Callable[..., Any]:
    """`function`, its CPU (and that of what it awaits) charged to `stage`."""

    def enter() -> contextvars.Token[str | None]:
        METER.calls[function.__qualname__] += 1
        token = STAGE.set(stage)
        if threading.get_ident() == METER.loop_thread:
            METER.switch(stage)
        return token

    def leave(token: contextvars.Token[str | None]) -> None:
        STAGE.reset(token)
        if threading.get_ident() == METER.loop_thread:
            METER.switch(STAGE.get() or METER.default)

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def hooked_async(*args: Any, **kwargs: Any) -> Any:
            token = enter()
            try:
                return await function(*args, **kwargs)
            finally:
                leave(token)

        return hooked_async

    @functools.wraps(function)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        token = enter()
        try:
            return function(*args, **kwargs)
        finally:
            leave(token)

    return hooked


def install(package: str) -> list[str]:
    """Time every loop callback and every aiosqlite call; hook the service's stage functions. Returns the hooks."""
    handle_run = asyncio.events.Handle._run

    def timed_run(self: asyncio.Handle) -> None:
        METER.default = self._context.get(STAGE) or classify(self._callback)  # type: ignore[attr-defined]
        METER.switch(METER.default)
        try:
            handle_run(self)
        finally:
            METER.switch(LOOP)

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    import aiosqlite.core

    execute = aiosqlite.core.Connection._execute

    async def timed_execute(self: Any, function: Any, *args: Any, **kwargs: Any) -> Any:
        stage = STAGE.get() or DRIVER

        def timed(*inner: Any, **named: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*inner, **named)
            finally:
                METER.add(stage, time.thread_time() - started)

        return await execute(self, timed, *args, **kwargs)

    aiosqlite.core.Connection._execute = timed_execute  # type: ignore[method-assign]
    hooked = []
    for (module_name, owner_name, name), stage in HOOKS.items():
        module = importlib.import_module(f"{package}.{module_name}")
        owner = getattr(module, owner_name) if owner_name else module
        if hasattr(owner, name):
            setattr(owner, name, staged(getattr(owner, name), stage))
            hooked.append(f"{module_name}.{owner_name + '.' if owner_name else ''}{name}")
    return hooked


async def post_in_child(port: int, count: int, concurrency: int) -> None:
    """The HTTP clients of bench_e2e, in a child process (their CPU is not the service's)."""
    script = (
        f"import asyncio, sys; sys.path.insert(0, {str(BENCHMARKS)!r}); from bench_e2e import post_notifications; "
        f"asyncio.run(post_notifications({port}, {count}, {concurrency}))"
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    if await child.wait() != 0:
        raise SystemExit("the HTTP clients failed")


async def wait_for(sink: Sink, count: int) -> None:
    deadline = time.monotonic() + 60 + count / 10
    while sink.received < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the sink received {sink.received} of {count} messages")
        await asyncio.sleep(0.005)


async def profile(package: str, sink: Sink, count: int, concurrency: int, functions: int) -> dict[str, Any]:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        f"{package}.main:create_app",
        factory=True,
        port=port,
        loop="asyncio",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    STAGE.set("harness")  # this task's polling is not the service's
    await post_in_child(port, 200, concurrency)  # warm-up: imports, pools, caches
    await wait_for(sink, 200)
    await asyncio.sleep(0.5)
    METER.reset()
    profiler = cProfile.Profile(time.thread_time) if functions else None
    if profiler is not None:
        profiler.enable()
    cpu_before, main_before, wall_before = process_cpu(), time.thread_time(), time.perf_counter()
    await post_in_child(port, count, concurrency)
    await wait_for(sink, 200 + count)
    wall = time.perf_counter() - wall_before
    main_cpu, cpu = time.thread_time() - main_before, process_cpu() - cpu_before
    METER.switch(LOOP)
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(functions)
        stats.sort_stats("cumulative").print_stats(functions)
    totals = dict(METER.totals)
    server.should_exit = True
    await serving
    await check_finished(package)
    totals.pop("harness", None)
    totals["other threads (not split)"] = max(0.0, cpu - main_cpu - METER.added)
    per_notification = {stage: 1e6 * seconds / count for stage, seconds in totals.items()}
    return {
        "per_notification_us": per_notification,
        "of_which_sqlite_threads_us": {
            stage: 1e6 * seconds / count for stage, seconds in METER.threads.items()
        },
        "process_cpu_us": 1e6 * cpu / count,
        "calls_per_notification": {name: calls / count for name, calls in METER.calls.items()},
        "delivered_per_s": count / wall,
    }


async def check_finished(package: str) -> None:
    """Exit unless every notification was recorded as sent (an outcome that failed to commit is no profile)."""
    store_module = importlib.import_module(f"{package}.store")
    store = store_module.NotificationStore(store_module.open_engine(os.environ["DATABASE_URL"]))
    try:
        backlog = await store.backlog()
    finally:
        await store.aclose()
    if any(backlog.counts.values()):
        raise SystemExit(f"not every notification was recorded as sent: {backlog.counts}")


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notifications", type=int, default=2000, help="notifications profiled (default 2000)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--template", type=Path, default=common.TEMPLATE, help="the template to render (default: this one)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--functions", type=int, default=0, help="also print the N costliest functions (cProfile; slower)"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with workspace("oscis-profile-e2e-") as directory, contextlib.ExitStack() as stack:
        common.TEMPLATE = args.template.resolve()
        project = render_project(directory / "render")
        tls = make_tls(directory)
        sink = stack.enter_context(Sink(tls))
        url = f"sqlite+aiosqlite:///{directory / 'store.db'}"
        if args.database == "postgresql":
            url = start_postgres(project, stack) or sys.exit("PostgreSQL is not installed")
        env = {**mail_env(sink, tls), "API_KEYS": API_KEY, "DATABASE_URL": url}
        migrate(project, {**os.environ, **env, "PYTHONPATH": str(project.src)}, directory / "migrate.log")
        os.environ.update(env)
        hooked = install(project.package)
        with (directory / "service.log").open("w") as log, contextlib.redirect_stderr(log):
            saved = os.dup(2)
            os.dup2(log.fileno(), 2)  # the service's log lines, as bench_e2e's services write them to a file
            try:
                result = asyncio.run(
                    profile(project.package, sink, args.notifications, args.concurrency, args.functions)
                )
            finally:
                os.dup2(saved, 2)
    result["load"] = [load_before, os.getloadavg()[0]]
    result["hooks"] = hooked
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    stages = result["per_notification_us"]
    print(
        f"{args.database}: {args.notifications} notifications, {args.concurrency} clients, "
        f"{result['delivered_per_s']:.0f} delivered/s under the hooks; "
        f"load average {load_before:.2f} -> {result['load'][1]:.2f}"
    )
    threads = result["of_which_sqlite_threads_us"]
    print(f"  {'stage':<32} {'CPU us per notification':>24} {'of which SQLite threads':>24}")
    for stage, micros in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {stage:<32} {micros:24.0f} {threads.get(stage, 0):24.0f}")
    print(f"  {'total (process CPU)':<32} {result['process_cpu_us']:24.0f}")
    calls = ", ".join(f"{name} {each:.3f}" for name, each in sorted(result["calls_per_notification"].items()))
    print(f"  calls per notification: {calls}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
