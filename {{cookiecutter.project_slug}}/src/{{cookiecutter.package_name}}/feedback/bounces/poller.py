"""Reads the bounce mailbox until stopped: each new message parsed, its events handed over, then marked.

The handler is the integration's: it gets the events of one message and returns those it matched
to a notification (by `notification_id`, else by `message_id`). Only once it has returned is the
message marked, matched or unmatched (`mailbox.py`), so a crash or a failing handler leaves it to
be read again; a message is never deleted. Each look at the mailbox is one session (log in, read,
log out), on a thread of its own since imaplib blocks: nothing is held open between looks.

Logs name messages by their UID and count events; they never carry a password or a message's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from ...mail.core.backoff import backoff
from ..events import DeliveryEvent
from .mailbox import UNMATCHED, BounceMailbox, MailboxError
from .reports import read_report
from .settings import BounceSettings

__all__ = ["BATCH", "BouncePoller", "EventHandler", "PollResult", "retry_delay"]

logger = logging.getLogger(__name__)

EventHandler = Callable[[Sequence[DeliveryEvent]], Awaitable[Collection[DeliveryEvent]]]
"""Records the events of one message; returns those it matched to a notification (empty: none)."""

BATCH = 100
"""Messages read in one look; a full batch is followed by another look at once."""

T = TypeVar("T")


@dataclass(frozen=True)
class PollResult:
    """What one look at the mailbox did."""

    messages: int  # messages read and marked
    matched: int  # of them, those the handler matched to a notification
    more: bool  # the batch was full: more may be waiting


class HandlerError(Exception):
    """The event handler raised: the message stays unread and is read again after the backoff."""


def retry_delay(failures: int, settings: BounceSettings) -> float:
    """Seconds before the next look after `failures` failed ones in a row: from BOUNCE_POLL_INTERVAL,
    doubling, at most BOUNCE_RETRY_BACKOFF_MAX (with the service's jitter)."""
    return backoff(failures, settings.poll_interval, settings.retry_backoff_max)


class BouncePoller:
    """Polls BOUNCE_IMAP_URL and hands each message's events to `handle`; `run()` until `stop()`."""

    def __init__(self, settings: BounceSettings, handle: EventHandler) -> None:
        if settings.mailbox is None:
            raise ValueError("BOUNCE_IMAP_URL is not set: there is no bounce mailbox to read")
        self._settings = settings
        self._handle = handle
        self._stopping = asyncio.Event()
        self.failures = 0
        """Looks that failed in a row (a server down, a wrong password, a failing handler)."""

    async def run(self) -> None:
        """Look until `stop()`: at once after a full batch, after BOUNCE_POLL_INTERVAL when nothing is
        left, and while looks fail after a doubling wait capped at BOUNCE_RETRY_BACKOFF_MAX."""
        while not self._stopping.is_set():
            try:
                result = await self.poll()
            except (MailboxError, HandlerError) as error:
                self.failures += 1
                delay = retry_delay(self.failures, self._settings)
                logger.warning(
                    "%s; trying again in %.3g s (failure %d in a row)", error, delay, self.failures
                )
            else:
                if self.failures:
                    logger.info("bounce mailbox: read again after %d failed looks", self.failures)
                self.failures = 0
                delay = 0.0 if result.more else self._settings.poll_interval
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    def stop(self) -> None:
        """Make `run()` return after the message in hand (the session is logged out)."""
        self._stopping.set()

    async def poll(self) -> PollResult:
        """One look: log in, read each new message, hand its events over, mark it, log out.

        Raises MailboxError (one line, no secret) when the server fails, HandlerError when the handler does.
        """
        mailbox = BounceMailbox(self._settings)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bounce-mailbox")
        loop = asyncio.get_running_loop()

        async def call(function: Callable[..., T], *args: object) -> T:
            return await loop.run_in_executor(executor, function, *args)

        try:
            await call(mailbox.open)
            uids = await call(mailbox.unseen, BATCH)
            read = matched = 0
            for uid in uids:
                if self._stopping.is_set():
                    break
                raw = await call(mailbox.fetch, uid)
                if raw is None:
                    continue  # expunged by someone else since the search
                events = await call(self._read, uid, raw)
                found = await self._hand_over(uid, events) if events else ()
                await call(mailbox.mark, uid, bool(found))
                read, matched = read + 1, matched + bool(found)
                if found:
                    logger.info(
                        "bounce mailbox: message %d: %d event(s), %d matched", uid, len(events), len(found)
                    )
                else:
                    logger.info(
                        "bounce mailbox: message %d matches no notification: flagged %s, kept", uid, UNMATCHED
                    )
            return PollResult(messages=read, matched=matched, more=len(uids) == BATCH)
        finally:
            await call(mailbox.close)  # in turn after any call still running, on the same thread
            executor.shutdown(wait=False)

    def _read(self, uid: int, raw: bytes) -> list[DeliveryEvent]:
        """The message's events; a message that cannot be read is one without (flagged unmatched, kept)."""
        try:
            return read_report(raw, self._settings.domain)
        except Exception as error:
            logger.warning(
                "bounce mailbox: message %d could not be read as a report (%s)", uid, type(error).__name__
            )
            return []

    async def _hand_over(self, uid: int, events: list[DeliveryEvent]) -> Collection[DeliveryEvent]:
        try:
            return await self._handle(events)
        except Exception as error:
            raise HandlerError(
                f"bounce mailbox: the event handler failed on message {uid} ({type(error).__name__}: {error}); "
                "the message stays unread"
            ) from error
