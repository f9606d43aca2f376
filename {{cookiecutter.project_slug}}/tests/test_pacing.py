"""The pace per server and the gate a dispatcher asks: held messages, throttling replies, quota pauses.

Clocks are moved by hand, so nothing here waits or depends on timing; the shared limits are real
(the store's SQLite database).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from {{ cookiecutter.package_name }}.mail.core.errors import classify
from {{ cookiecutter.package_name }}.mail.core.throttling import Throttle
from {{ cookiecutter.package_name }}.ratelimit.gate import DEFAULT_QUOTA_HOLD, Hold, LimitEvents, SendGate, create_gate
from {{ cookiecutter.package_name }}.ratelimit.metrics import LimitMetrics
from {{ cookiecutter.package_name }}.ratelimit.pacing import COOLDOWN, FLOOR, RECOVERY, Pacer
from {{ cookiecutter.package_name }}.ratelimit.sending import SendLimiter
from {{ cookiecutter.package_name }}.ratelimit.settings import RateLimitSettings, limits_in_force, parse_limits
from {{ cookiecutter.package_name }}.ratelimit.sql import SqlStorage
from {{ cookiecutter.package_name }}.store import open_engine

from .conftest import migrate

T = TypeVar("T")
START = 1_700_000_000.0
THROTTLED = classify(aiosmtplib.SMTPResponseException(421, "4.7.0 Try again later, closing connection."))
QUOTA_SPENT = classify(aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending limit exceeded."))
REFUSED = classify(aiosmtplib.SMTPDataError(550, "5.7.1 Message rejected"))


class Clock:
    """Seconds, moved by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder(LimitEvents):
    """What a gate reported."""

    def __init__(self) -> None:
        self.holds: list[tuple[str, int]] = []
        self.paces: list[float | None] = []
        self.replies: list[Throttle] = []

    def held(self, reason: str, count: int) -> None:
        self.holds.append((reason, count))

    def paced(self, server: str, rate: float | None) -> None:
        self.paces.append(rate)

    def throttled(self, server: str, throttle: Throttle) -> None:
        self.replies.append(throttle)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def sending_at(pacer: Pacer, clock: Clock, per_second: int, seconds: int) -> None:
    """`per_second` sends at the start of each of `seconds` seconds."""
    for _ in range(seconds):
        pacer.take(per_second)
        clock.now += 1


def test_a_pacer_not_throttled_lets_everything_through() -> None:
    pacer = Pacer("smtp.example.com", clock=Clock())
    pacer.take(1000)
    assert (pacer.available(), pacer.delay(), pacer.rate, pacer.paused) == (None, 0.0, None, False)


def test_a_throttling_reply_halves_the_pace_this_process_sent_at() -> None:
    clock = Clock()
    pacer = Pacer("smtp.example.com", clock=clock)
    sending_at(pacer, clock, 4, 10)  # 4 a second
    pacer.throttled()
    assert pacer.rate == 2
    assert pacer.available() == 0
    assert pacer.delay() == 0.5
    pacer.throttled()  # a send in flight answered the same: counted once
    assert pacer.rate == 2
    clock.now += 0.5
    assert pacer.available() == 1
    pacer.take(1)
    assert pacer.delay(after=1) == 1.0
    clock.now += COOLDOWN
    pacer.throttled()
    assert pacer.rate == 1


def test_the_pace_recovers_by_half_per_period_then_pacing_stops() -> None:
    clock = Clock()
    pacer = Pacer("smtp.example.com", clock=clock)
    sending_at(pacer, clock, 4, 10)
    pacer.throttled()
    clock.now += RECOVERY
    assert pacer.rate == 3
    assert pacer.available() == 2  # the bucket holds one second's worth at most
    clock.now += RECOVERY
    assert pacer.rate is None
    assert pacer.available() is None


def test_the_pace_never_falls_below_the_floor() -> None:
    clock = Clock()
    pacer = Pacer("smtp.example.com", clock=clock)
    for _ in range(20):
        pacer.throttled()
        clock.now += COOLDOWN
    assert pacer.rate == FLOOR
    assert pacer.delay() <= 1 / FLOOR


def test_a_quota_pause_stops_every_send_until_it_ends() -> None:
    clock = Clock()
    pacer = Pacer("smtp.example.com", clock=clock)
    pacer.pause(3600)
    assert (pacer.available(), pacer.paused, pacer.delay()) == (0, True, 3600)
    clock.now += 3600
    assert (pacer.available(), pacer.paused) == (None, False)


def run_with_store(tmp_path: Path, body: Callable[[SqlStorage], Awaitable[T]]) -> T:
    """`body(storage)` on a fresh SQLite store whose hits are stamped by `storage`'s clock."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}"
    migrate(url)

    async def run() -> T:
        engine = open_engine(url)
        try:
            return await body(SqlStorage(engine, clock=CLOCK))
        finally:
            await engine.dispose()

    return asyncio.run(run())


CLOCK = Clock()


@pytest.fixture(autouse=True)
def _reset_clock() -> None:
    CLOCK.now = START


def gate_on(storage: SqlStorage, messages: str, recipients: str, events: LimitEvents) -> SendGate:
    limiter = SendLimiter(
        storage,
        parse_limits(messages) if messages else (),
        parse_limits(recipients) if recipients else (),
        "acct",
    )
    return SendGate(Pacer("smtp.example.com", clock=CLOCK), limiter, events=events, clock=CLOCK)


def test_messages_over_the_limit_are_held_until_the_window_frees(tmp_path: Path) -> None:
    events = Recorder()

    async def body(storage: SqlStorage) -> None:
        gate = gate_on(storage, "3/minute", "", events)
        allowance = await gate.allowance()
        assert (allowance.messages, allowance.recipients, allowance.retry_at) == (3, None, None)
        admission = await gate.admit([1, 1, 1, 1, 1])
        assert (admission.admitted, admission.retry_at) == (3, at(START + 61))  # a minute, plus the margin
        allowance = await gate.allowance()
        assert (allowance.messages, allowance.retry_at) == (0, at(START + 61))
        CLOCK.now = START + 61.5
        assert (await gate.allowance()).messages == 3
        assert (await gate.admit([1, 1])).admitted == 2

    run_with_store(tmp_path, body)
    assert events.holds == [("message_rate", 2)]


def test_a_gate_whose_last_read_is_stale_reads_again_and_takes_only_what_is_left(tmp_path: Path) -> None:
    """Two gates on one account, as two processes: the second takes room after the first read the windows."""
    events = Recorder()

    async def body(storage: SqlStorage) -> tuple[int, int, int]:
        first, second = gate_on(storage, "3/minute", "", events), gate_on(storage, "3/minute", "", Recorder())
        assert (await first.allowance()).messages == 3
        taken_by_second = (await second.admit([1, 1])).admitted
        admission = await first.admit([1, 1, 1])
        return taken_by_second, admission.admitted, (await first.allowance()).messages or 0

    assert run_with_store(tmp_path, body) == (2, 1, 0)
    assert events.holds == [("message_rate", 2)]


def test_recipients_over_the_limit_are_held_message_by_message(tmp_path: Path) -> None:
    events = Recorder()

    async def body(storage: SqlStorage) -> None:
        gate = gate_on(storage, "100/minute", "10/hour", events)
        admission = await gate.admit([4, 4, 4])
        assert (admission.admitted, admission.retry_at) == (2, at(START + 3601))
        assert (await gate.allowance()).recipients == 2
        assert (await gate.admit([2, 1])).admitted == 1
        allowance = await gate.allowance()
        assert (allowance.messages, allowance.recipients, allowance.retry_at) == (97, 0, at(START + 3601))

    run_with_store(tmp_path, body)
    assert events.holds == [("recipient_rate", 1), ("recipient_rate", 1)]


def test_a_throttling_reply_slows_down_and_holds_the_notification(tmp_path: Path) -> None:
    events = Recorder()

    async def body(storage: SqlStorage) -> Hold | None:
        gate = gate_on(storage, "1000/minute", "", events)
        for _ in range(10):
            assert (await gate.admit([1] * 4)).admitted == 4  # 4 a second
            CLOCK.now += 1
        hold = gate.throttled(THROTTLED)
        allowance = await gate.allowance()
        assert (allowance.messages, allowance.retry_at) == (0, at(CLOCK.now + 0.5))
        admission = await gate.admit([1, 1])
        assert (admission.admitted, admission.retry_at) == (0, at(CLOCK.now + 0.5))
        CLOCK.now += 1
        assert (await gate.admit([1, 1, 1])).admitted == 2  # the pace: 2 a second, at most one second's worth
        return hold

    hold = run_with_store(tmp_path, body)
    assert hold == Hold(Throttle.RATE, at(START + 10 + 0.5))
    assert events.replies == [Throttle.RATE]
    assert events.paces == [2]
    assert events.holds == [("throttle", 1), ("pace", 2), ("pace", 1)]


def test_a_quota_reply_pauses_sending_for_the_quota_window() -> None:
    limits = limits_in_force(RateLimitSettings(mail_rate_limit="30/minute, 2000/day"), "smtp.example.com")
    events = Recorder()
    gate = create_gate(
        SqlStorage(open_engine("sqlite+aiosqlite://")), limits, "smtp.example.com", "me", events
    )
    before = time.time()
    hold = gate.throttled(QUOTA_SPENT)
    after = time.time()
    assert hold is not None
    assert hold.throttle is Throttle.QUOTA
    assert before + 86400 <= hold.until.timestamp() <= after + 86400  # the longest window: a day
    assert gate.pacer.paused
    assert events.replies == [Throttle.QUOTA]
    assert events.holds == [("quota", 1)]


def test_without_sending_limits_a_quota_reply_pauses_for_an_hour() -> None:
    gate = SendGate(Pacer("smtp.example.com", clock=CLOCK), clock=CLOCK)
    hold = gate.throttled(QUOTA_SPENT)
    assert hold == Hold(Throttle.QUOTA, at(START + DEFAULT_QUOTA_HOLD))

    async def admitted() -> tuple[int, datetime | None]:
        admission = await gate.admit([1])
        return admission.admitted, admission.retry_at

    assert asyncio.run(admitted()) == (0, at(START + DEFAULT_QUOTA_HOLD))


def test_an_ordinary_refusal_is_an_attempt_like_any_other() -> None:
    events = Recorder()
    gate = SendGate(Pacer("smtp.example.com", clock=CLOCK), events=events, clock=CLOCK)
    assert gate.throttled(REFUSED) is None
    assert gate.pacer.rate is None
    assert (events.holds, events.replies) == ([], [])


def test_the_metrics_count_holds_the_pace_and_throttling_replies() -> None:
    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    server = "smtp.metrics.example"
    held_before = sample("notifications_held_total", {"reason": "throttle"})
    replies_before = sample("smtp_throttle_replies_total", {"server": server, "kind": "rate"})
    gate = SendGate(Pacer(server, clock=CLOCK), events=LimitMetrics(), clock=CLOCK)
    gate.throttled(THROTTLED)
    assert sample("notifications_held_total", {"reason": "throttle"}) == held_before + 1
    assert sample("smtp_throttle_replies_total", {"server": server, "kind": "rate"}) == replies_before + 1
    assert (
        sample("smtp_pace_messages_per_second", {"server": server}) == FLOOR
    )  # nothing sent before: the floor
    for reason in ("message_rate", "recipient_rate", "pace", "quota"):
        assert REGISTRY.get_sample_value("notifications_held_total", {"reason": reason}) is not None
