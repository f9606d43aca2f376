"""Processes that take from shared limits at the same moment, as the service's worker processes do.

Each runs `take_in_process` in a fresh interpreter (spawn), with its own event loop, connections and
storage, and reports what it was admitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from {{ cookiecutter.package_name }}.ratelimit.gate import SendGate
from {{ cookiecutter.package_name }}.ratelimit.pacing import Pacer
from {{ cookiecutter.package_name }}.ratelimit.sending import SendLimiter
from {{ cookiecutter.package_name }}.ratelimit.settings import parse_limits
from {{ cookiecutter.package_name }}.ratelimit.storage import close_storage, shared_storage
from {{ cookiecutter.package_name }}.store import open_engine

ACCOUNT = "smtp.example.com:sender@example.com"
TASKS = 4
"""Coroutines offering at once in each process (a dispatcher's batches overlap too)."""


def take_in_process(
    database_url: str,
    redis_url: str | None,
    messages: str,
    recipients: str,
    batch: Sequence[int],
    batches: int,
    start_at: float,
) -> tuple[int, int]:
    """In each of TASKS coroutines, offer `batches` times the messages of `batch` (each its recipient count) to a
    gate on the shared limits; returns (messages, recipients) admitted in all. Starts at `start_at` (epoch
    seconds), with the other processes."""

    async def run() -> tuple[int, int]:
        engine = open_engine(database_url)
{%- if cookiecutter.delivery == "celery" %}
        storage = shared_storage(engine, redis_url)
{%- else %}
        assert redis_url is None, "limits are counted in Redis only when it is the broker"
        storage = shared_storage(engine)
{%- endif %}
        limiter = SendLimiter(
            storage,
            parse_limits(messages) if messages else (),
            parse_limits(recipients) if recipients else (),
            ACCOUNT,
        )
        gate = SendGate(Pacer("smtp.example.com"), limiter)
        admitted = [0, 0]

        async def offer() -> None:
            for _ in range(batches):
                count = (await gate.admit(batch)).admitted
                admitted[0] += count
                admitted[1] += sum(batch[:count])

        try:
            await limiter.windows()  # connected and warm before the start
            await asyncio.sleep(max(start_at - time.time(), 0))
            await asyncio.gather(*(offer() for _ in range(TASKS)))
        finally:
            await close_storage(storage)
            await engine.dispose()
        return admitted[0], admitted[1]

    return asyncio.run(run())


def take_together(
    processes: int,
    database_url: str,
    messages: str,
    recipients: str = "",
    *,
    batch: Sequence[int] = (1,),
    batches: int = 40,
    redis_url: str | None = None,
) -> list[tuple[int, int]]:
    """`processes` processes running `take_in_process` at once; what each was admitted."""
    start_at = time.time() + 2.0  # every interpreter is up by then
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(
                take_in_process, database_url, redis_url, messages, recipients, batch, batches, start_at
            )
            for _ in range(processes)
        ]
        return [future.result(timeout=120) for future in futures]
