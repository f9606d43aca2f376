"""The delivery core of both deliveries: claim due notifications with a lease, send, record the outcome.

A transient failure (4xx, timeout, lost connection) is rescheduled in the store with capped
exponential backoff and jitter, so an outage of hours is ridden out across restarts; a
permanent one (5xx) makes the notification `failed` with the server's reply. Recipients
refused with a 4xx reply are retried alone. An unknown outcome (the message went out, no reply
came: the server may have accepted it, or not, as a restarting server does not) is sent once more
after the backoff, with the same Message-ID, unless DELIVERY_RETRY_UNKNOWN_OUTCOME is false; a
second one fails the notification, so none is sent more than twice. A notification whose sender
died is claimed again once its lease expires; it may then be sent twice, with the same
Message-ID and X-Notification-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import datetime, timedelta

from ..feedback.sending import SendFeedback, rcpt_refusals
from ..mail import Attachment, DeliveryOutcomeUnknownError, Mailer, MailError
from ..mail.core.backoff import backoff
from ..notifications import Composer, Notification
from ..notifications.settings import MessageSettings
from ..observability.logs import log_context
from ..ratelimit.gate import SendGate
from ..store import (
    OUTCOME_UNKNOWN,
    NotificationRecord,
    NotificationStore,
    Outcome,
    Status,
    StoreSettings,
    Suppression,
    normalize,
    utcnow,
)
from .holding import Holding
from .settings import DeliverySettings

logger = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0
"""Seconds between two purges of old bodies and records (retention)."""
STOP_GRACE = 5.0
"""Seconds a stopping dispatcher allows, beyond MAIL_DATA_TIMEOUT, for the sends it waits for to record their outcome."""
HELD_AT_STOP = (
    "the process stopped while the server held the message (its end of DATA had gone out, no reply yet)"
)


class DeliveryEvents:
    """What a `Dispatcher` reports (for metrics); the methods do nothing unless overridden."""

    def attempted(self, result: str) -> None:
        """An attempt reached the mailer: `result` is "2xx" or what failed (`MailError.failure`)."""

    def recorded(self, record: NotificationRecord, status: Status) -> None:
        """The outcome of an attempt on `record` was recorded: `sent`, `retrying` or `failed`."""


class Dispatcher:
    """Sends the notifications of `store` through `mailer`, at most DELIVERY_CONCURRENCY at once, within the
    sending limits of `gate` (see `holding.py`); `events` hears of each attempt and outcome."""

    def __init__(
        self,
        store: NotificationStore,
        mailer: Mailer,
        settings: DeliverySettings,
        retention: StoreSettings,
        *,
        service_name: str,
        sender: str,
        events: DeliveryEvents | None = None,
        gate: SendGate | None = None,
        composer: Composer | None = None,
        feedback: SendFeedback | None = None,
    ) -> None:
        self.store = store
        self._holding = Holding(store, gate, settings.max_hold)
        self.composer = composer or Composer.load(MessageSettings(), service_name=service_name, sender=sender)
        """Renders the templates (loaded once, by whoever made the composer) and builds each email."""
        self._feedback = feedback or SendFeedback()
        self._events = events or DeliveryEvents()
        self._mailer = mailer
        self._settings = settings
        self._retention = retention
        self._in_flight: dict[asyncio.Task[None], NotificationRecord] = {}
        self._sending: set[str] = set()
        """The notifications whose send is in the mailer (not claiming, not recording)."""
        self._changed = asyncio.Event()
        self._claiming = asyncio.Lock()
        """Held while claimed notifications are not yet in flight, so `stop` waits for their sends too."""
        self._low_water = min(2 * mailer.settings.pool_size, settings.concurrency)
        """Fewer sends in flight than this: claim more now (two per SMTP session keep each one busy)."""
        self._renewal: asyncio.Task[None] | None = None
        self._recording = 0
        """Sends in flight whose outcome is being committed."""
        self._look = True
        """Something may be due that no claim has looked for yet."""
        self._stopping = False
        self._last_purge = 0.0

    def wake(self) -> None:
        """Look for due notifications now (a new one was committed)."""
        self._look = True
        if self._wants_claim():
            self._changed.set()

    def _wants_claim(self) -> bool:
        """Whether a claim is worth a transaction now: something may be due, a slot is free, and the sends in flight
        (not those recording their outcome) no longer keep every SMTP session busy: under load, one claim then
        takes what arrived meanwhile."""
        in_flight = len(self._in_flight)
        return (
            self._look
            and in_flight - self._recording < self._low_water
            and in_flight < self._settings.concurrency
        )

    async def run(self) -> None:
        """Claim and send due notifications until `stop()`; purge old ones every hour.

        It claims when woken by a new notification, when its sends in flight run low while more may be due, and
        every DELIVERY_POLL_INTERVAL (retries whose time came, expired leases, other processes' notifications).
        """
        loop = asyncio.get_running_loop()
        if self._renewal is None:
            self._renewal = asyncio.create_task(self._renew_leases(), name="lease-renewal")
        while not self._stopping:
            self._changed.clear()
            if loop.time() - self._last_purge >= PURGE_INTERVAL:
                self._last_purge = loop.time()
                try:
                    await self.purge()
                except Exception:
                    logger.exception("retention: purging old notifications failed; trying again in an hour")
            if self._wants_claim():
                free, wait = self._settings.concurrency - len(self._in_flight), self._settings.poll_interval
                async with self._claiming:  # `stop` waits for what it claims to be in flight
                    allowed, blocked = await self._holding.claimable(free)
                    self._look = False  # what is committed from now on wakes it again
                    try:
                        claimed = await self.store.claim(allowed, self._settings.lease) if allowed else []
                        admitted = await self._holding.admit(claimed)
                    except Exception:
                        logger.exception("could not claim notifications; trying again")
                        claimed = admitted = []
                    for record in admitted:
                        self._start(record)
                if claimed and len(claimed) == allowed:  # there may be more
                    self._look = True
                    continue
                if not allowed:  # a limit is reached: nothing to claim until it frees (or stop)
                    self._look = True
                    await self._pause(min(blocked, wait))
                    continue
            try:
                async with asyncio.timeout(self._settings.poll_interval):
                    await self._changed.wait()
            except TimeoutError:
                self._look = True

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` (a new notification does not end the wait; a stop does)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping and (left := deadline - asyncio.get_running_loop().time()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()

    def _start(self, record: NotificationRecord) -> None:
        task = asyncio.create_task(self.deliver(record), name=f"notification-{record.id}")
        self._in_flight[task] = record

        def done(finished: asyncio.Task[None]) -> None:
            self._in_flight.pop(finished, None)
            if self._wants_claim():
                self._changed.set()

        task.add_done_callback(done)

    async def stop(self) -> None:
        """Stop claiming; wait up to DELIVERY_SHUTDOWN_TIMEOUT for the sends in flight, then cancel those whose
        message has not gone out: they keep their lease and are claimed again once it expires (nothing was sent).

        A send the server holds (its end of DATA went out, no reply yet) is not cut off, nor one recording its
        outcome. The held ones' attempts are first noted in the store as unknown outcomes, what they stay should
        the process end before the reply (handled then like any other), and their replies awaited
        (MAIL_DATA_TIMEOUT at most).
        """
        self._stopping = True
        self._changed.set()
        async with self._claiming:  # a claim under way puts its notifications in flight first
            pass
        try:
            await self._finish_in_flight()
        finally:
            if self._renewal is not None:
                self._renewal.cancel()
                await asyncio.gather(self._renewal, return_exceptions=True)

    async def _finish_in_flight(self) -> None:
        """The waiting part of `stop()`, while the leases of the sends in flight are still renewed."""
        if not self._in_flight:
            return
        _, late = await asyncio.wait(set(self._in_flight), timeout=self._settings.shutdown_timeout)
        if not late:
            return
        held = {task for task in late if self._mailer.awaiting_reply(task)}
        unsent = {task for task in late - held if self._in_flight[task].id in self._sending}
        for task in unsent:
            task.cancel()
        if unsent:
            logger.warning(
                "stopped %d send(s) whose message had not gone out; they are sent after DELIVERY_LEASE",
                len(unsent),
            )
        if held:
            await self._note_held(held)
        wait = self._mailer.settings.data_timeout + STOP_GRACE
        _, hung = await asyncio.wait(late, timeout=wait)
        for task in hung:
            task.cancel()
        if hung:
            logger.error(
                "stopped %d send(s) still running after %g s; they are retried after DELIVERY_LEASE",
                len(hung),
                wait,
            )
            await asyncio.wait(hung)

    async def _note_held(self, held: set[asyncio.Task[None]]) -> None:
        """Note the attempts of `held` sends as unknown outcomes in the store, then say that the process waits for them."""
        notes = [self.store.note_unknown_outcome(self._in_flight[task], HELD_AT_STOP) for task in held]
        failed = [
            each
            for each in await asyncio.gather(*notes, return_exceptions=True)
            if isinstance(each, Exception)
        ]
        if failed:
            logger.warning(
                "could not note %d held send(s) in the store (%s)", len(failed), type(failed[0]).__name__
            )
        logger.warning(
            "stopping: the server holds the message of %d send(s); waiting for its reply (MAIL_DATA_TIMEOUT, %g s at most)",
            len(held),
            self._mailer.settings.data_timeout,
        )

    async def deliver_id(self, notification_id: str) -> Status | None:
        """Claim and send one notification if it is due; None when it is not (sent, failed, leased) or a sending
        limit held it back (until the sweeper publishes it again)."""
        claimed = await self._holding.admit(await self.store.claim(1, self._settings.lease, notification_id))
        if not claimed:
            return None
        with log_context(claimed[0].id, claimed[0].request_id):
            return await self._deliver(claimed[0], renew=True)

    async def deliver(self, record: NotificationRecord) -> None:
        """Send one claimed notification and record the outcome; never raises (but for cancellation)."""
        with log_context(record.id, record.request_id):
            try:
                await self._deliver(record, renew=False)  # `run` renews the leases in flight together
            except Exception:
                logger.exception(
                    "notification %s: recording the outcome failed; retried after the lease", record.id
                )

    async def _deliver(self, record: NotificationRecord, *, renew: bool) -> Status:
        """Send and record, inside the `log_context` of `record`: every line logged meanwhile names it.
        `renew`: renew its lease while the send runs (else the caller does)."""
        renewal = asyncio.create_task(self._keep_lease(record), name=f"lease-{record.id}") if renew else None
        try:
            skipped = await self._feedback.suppressed(self.store, record)
            attempt = await self._attempt(record, skipped)
        finally:
            if renewal is not None:
                renewal.cancel()
        self._recording += 1  # its send is over: no longer what keeps the SMTP sessions busy
        if self._wants_claim():
            self._changed.set()
        try:
            if isinstance(attempt, tuple):  # held back by a throttling or quota reply: not an attempt
                await self._holding.hold(record, *attempt)
                return Status.QUEUED
            outcome = self._feedback.complete(record, attempt, skipped)
            recorded = await self.store.record(record, outcome)
        finally:
            self._recording -= 1
        if recorded:
            self._events.recorded(record, outcome.status)
            if outcome.status != Status.SENT:  # a sent one was logged as delivered
                logger.warning("notification %s %s: %s", record.id, outcome.status, outcome.reply)
        else:
            logger.warning(
                "notification %s: lease lost while sending; the other sender records it", record.id
            )
        return outcome.status

    async def _keep_lease(self, record: NotificationRecord) -> None:
        """Renew the lease every third of DELIVERY_LEASE while the send runs (the end of DATA may take
        MAIL_DATA_TIMEOUT), so only a dead process's claim expires and is sent again."""
        lease = self._settings.lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await self.store.extend(record, lease):
                    break
            except Exception:  # the store is away: the lease may lapse; the next renewal tries again
                logger.warning("notification %s: renewing its lease failed", record.id, exc_info=True)

    async def _renew_leases(self) -> None:
        """Renew the leases of every send in flight every third of DELIVERY_LEASE, in one transaction (see
        `_keep_lease`); runs until `stop()` has waited for them."""
        lease = self._settings.lease
        while True:
            await asyncio.sleep(lease / 3)
            renewals = [self.store.extend(record, lease) for record in list(self._in_flight.values())]
            failed = [
                each
                for each in await asyncio.gather(*renewals, return_exceptions=True)
                if isinstance(each, Exception)
            ]
            if failed:  # the store is away: the leases may lapse; the next renewal tries again
                logger.warning(
                    "renewing the leases of %d send(s) failed (%s)", len(failed), type(failed[0]).__name__
                )

    async def _attempt(
        self, record: NotificationRecord, skipped: dict[str, Suppression]
    ) -> Outcome | tuple[datetime, str]:
        """The outcome of one attempt to the pending recipients but the suppressed ones (`skipped`), or until
        when to hold `record` and why (a throttling reply: not an attempt)."""
        attempts, budget = record.attempt_count, self._settings.max_attempts
        overdue = self._holding.overdue(record)
        if overdue is not None:
            return Outcome(Status.FAILED, f"not attempted: {overdue}", error=overdue)
        if record.content is None:
            return Outcome(
                Status.FAILED, "content deleted by retention", error="content deleted by retention"
            )
        if attempts > budget:
            error = (
                f"gave up after {budget} attempts (DELIVERY_MAX_ATTEMPTS); last error: {record.last_error}"
            )
            return Outcome(Status.FAILED, "not attempted: attempt budget spent", error=error)
        earlier = unknown_outcomes(record)
        why = self._no_more_sends(
            earlier
        )  # set only when a process stopped while the server held it (`stop`)
        if why is not None:
            error = f"not sent again: {why}; last error: {record.last_error}"
            return Outcome(Status.FAILED, f"not attempted: {why}", error=error)
        recipients = [address for address in record.pending if normalize(address) not in skipped]
        if not recipients:
            reply = f"not sent: {len(skipped)} recipient(s) on the suppression list"
            return Outcome(Status.SENT if record.accepted else Status.SUPPRESSED, reply, pending=())
        content = dict(record.content)
        self._sending.add(record.id)
        try:
            files = await self._attachments(record.id) if content.pop("attachments", 0) else []
            composed = self.composer.compose(Notification.model_construct(id=record.id, **content), files)
            del files  # the bytes live on in `composed` only, until it is sent
            message = composed.message
            message.headers = {**(message.headers or {}), **self._feedback.headers(record.id)}
            result = await self._mailer.send(
                message,
                recipients=recipients,
                sender=self._feedback.envelope_sender(record.id),
                attachments=composed.parts,
            )
        except DeliveryOutcomeUnknownError as error:
            self._events.attempted(error.failure)
            return self._unknown(record, str(error), earlier, recipients)
        except MailError as error:
            self._events.attempted(error.failure)
            reply = str(error)
            until = self._holding.throttled(error)
            if until is not None:
                return until, f"held back by a throttling reply: {reply}"
            if error.transient and attempts < budget:
                return self._retry(record, reply, recipients)
            return Outcome(
                Status.FAILED, reply, refused=rcpt_refusals(error), pending=recipients, error=reply
            )
        except Exception as error:
            self._events.attempted("other")
            reply = " ".join(f"{type(error).__name__}: {error}".split())
            logger.exception("notification %s could not be built or sent", record.id)
            return Outcome(Status.FAILED, reply, error=reply)
        finally:
            self._sending.discard(record.id)
        self._events.attempted("2xx")
        for address, refusal in result.refused.items():
            logger.warning("notification %s refused for %s: %s", record.id, address, refusal)
        logger.info(
            "notification %s delivered to %d recipient(s) after %d attempt(s)",
            record.id,
            len(result.accepted),
            attempts,
        )
        deferred = [address for address, reply in result.refused.items() if reply.startswith("4")]
        refused = {address: reply for address, reply in result.refused.items() if address not in deferred}
        reply = result.reply or "250"  # the server's reply to the end of DATA, e.g. "250 2.0.0 queued as ..."
        if deferred:
            refusals = {address: result.refused[address] for address in deferred}
            summary = "; ".join(f"{address}: {text}" for address, text in refusals.items())
            if attempts < budget:
                retry = self._retry(record, f"{reply}; deferred {summary}", deferred)
                return Outcome(
                    retry.status,
                    retry.reply,
                    accepted=result.accepted,
                    refused={**refused, **refusals},
                    pending=deferred,
                    next_attempt_at=retry.next_attempt_at,
                    error=retry.error,
                )
            return Outcome(
                Status.FAILED,
                reply,
                accepted=result.accepted,
                refused={**refused, **refusals},
                pending=deferred,
                error=summary,
            )
        return Outcome(Status.SENT, reply, accepted=result.accepted, refused=refused, pending=())

    async def _attachments(self, notification_id: str) -> list[Attachment]:
        """The files attached to the notification, as the mailer takes them."""
        found = await self.store.attachments(notification_id)
        return [Attachment(row.filename, row.content_type, row.content) for row in found]

    def _unknown(
        self, record: NotificationRecord, reply: str, earlier: int, recipients: list[str]
    ) -> Outcome:
        """The outcome of an attempt whose message went out without a reply (`earlier`: such attempts before it):
        sent once more after the backoff, or failed."""
        why = self._no_more_sends(earlier + 1)
        if why is None and record.attempt_count >= self._settings.max_attempts:
            why = f"gave up after {record.attempt_count} attempts (DELIVERY_MAX_ATTEMPTS)"
        if why is None:
            return dataclasses.replace(self._retry(record, reply, recipients), unknown=True)
        return Outcome(Status.FAILED, reply, error=f"{reply}; not sent again: {why}", unknown=True)

    def _no_more_sends(self, unknown: int) -> str | None:
        """Why a notification may not be sent again after `unknown` attempts with an unknown outcome; None: it may."""
        if unknown and not self._settings.retry_unknown_outcome:
            return "its outcome is unknown and DELIVERY_RETRY_UNKNOWN_OUTCOME=false keeps it at most once"
        if unknown > 1:
            return f"{unknown} attempts had an unknown outcome: another could deliver it a third time"
        return None

    def _retry(self, record: NotificationRecord, reply: str, pending: list[str]) -> Outcome:
        delay = backoff(record.attempt_count, self._settings.retry_backoff, self._settings.retry_backoff_max)
        return Outcome(
            Status.RETRYING,
            reply,
            pending=pending,
            next_attempt_at=utcnow() + timedelta(seconds=delay),
            error=reply,
        )

    async def purge(self) -> tuple[int, int]:
        """Apply retention now (see `apply_retention`)."""
        return await apply_retention(self.store, self._retention)


def unknown_outcomes(record: NotificationRecord) -> int:
    """How many attempts of `record`'s current attempt budget (since an operator's retry renewed it, if one did)
    ended with an unknown outcome."""
    recorded = record.attempt_count - 1  # the claim of this attempt counted it already
    recent = record.attempts[-recorded:] if recorded > 0 else []
    return sum(attempt.get("outcome") == OUTCOME_UNKNOWN for attempt in recent)


async def apply_retention(store: NotificationStore, retention: StoreSettings) -> tuple[int, int]:
    """Delete the bodies of notifications sent BODY_RETENTION ago and the records finished ROW_RETENTION ago;
    returns (bodies, records) deleted."""
    bodies, rows = await store.purge(
        retention.body_retention, retention.row_retention, retention.idempotency_key_ttl
    )
    if bodies or rows:
        logger.info("retention: deleted %d body(ies) and %d record(s)", bodies, rows)
    return bodies, rows
