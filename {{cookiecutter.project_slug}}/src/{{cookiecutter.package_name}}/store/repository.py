"""`NotificationStore`: every read and write of the notification store, on an async SQLAlchemy engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar

from sqlalchemy import Table, and_, case, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.pool import PoolResetState
from sqlalchemy.sql.elements import ClauseElement

from .attachments import ATTACHMENTS_KEY, AttachmentRecord
from .events import RecipientEvents, insert_rows, purge_feedback
from .models import NotificationRecord, Priority, Status
from .outbox import Outbox
from .statements import INSERT, LEASED, LeaseLostError, claim_statement, leased_batches, leased_update
from .suppressions import SuppressionList

__all__ = [
    "OUTCOME_UNKNOWN",
    "Added",
    "Backlog",
    "ClientNotifications",
    "IdempotencyKeyReusedError",
    "NotificationStore",
    "Outcome",
    "open_engine",
    "utcnow",
]

T = TypeVar("T")
WriteLock: TypeAlias = asyncio.Lock | contextlib.nullcontext[None]
"""SQLite: this process's writes take turns; PostgreSQL: none needed."""
CLAIMABLE = (Status.QUEUED, Status.RETRYING)
FINISHED = (Status.SENT, Status.FAILED, Status.SUPPRESSED, Status.CANCELLED)
Change: TypeAlias = tuple[str, str | None, dict[str, Any], Sequence[tuple[Table, Sequence[dict[str, Any]]]]]
"""An update of a leased notification: (id, lease token, new values, rows to insert with it)."""
OUTCOME_UNKNOWN = "outcome_unknown"
"""The `outcome` of an attempt whose message went out but got no reply: the server may have accepted it, or not.
(Every other attempt's `outcome` is the status it led to.)"""


def brought_rows(changes: Sequence[Change], applied: list[bool]) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows the applied `changes` bring (their recipient and outgoing events), one group per table."""
    groups: dict[Table, list[dict[str, Any]]] = {}
    for (_, _, _, rows), done in zip(changes, applied, strict=True):
        for table, group in rows if done else ():
            groups.setdefault(table, []).extend(group)
    return list(groups.items())


class IdempotencyKeyReusedError(ValueError):
    """The Idempotency-Key was used before with another request body."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt changed: the new status and what to record about it."""

    status: Status
    reply: str
    accepted: Sequence[str] = ()
    refused: dict[str, str] | None = None
    pending: Sequence[str] | None = None
    """The recipients still to send to; None: those of this attempt."""
    next_attempt_at: datetime | None = None
    error: str | None = None
    unknown: bool = False
    """The message went out but no reply came: the attempt is recorded as OUTCOME_UNKNOWN."""
    rows: Sequence[tuple[Table, Sequence[dict[str, Any]]]] = ()
    """Rows inserted in the transaction that records the outcome (recipient events, suppressions, outgoing
    events), duplicates skipped; none if the lease was lost."""


@dataclass(frozen=True)
class Added:
    """What `ClientNotifications.add` did: a new notification, or the one already kept under its Idempotency-Key."""

    id: str
    status: Status
    created: bool


@dataclass(frozen=True)
class Backlog:
    """The notifications not finished yet: how many in each status, and since when the oldest due one waits."""

    counts: dict[Status, int]
    """`queued`, `sending` and `retrying`, each present (0 when none)."""
    oldest_due: datetime | None
    scheduled: int = 0
    """Queued notifications not due yet: scheduled with `send_at`, or held back by a sending limit."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def open_engine(url: str) -> AsyncEngine:
    """An engine for `url`; SQLite files get WAL journaling, so readers never wait for the writer, and are
    created readable by their owner only (they hold every body and recipient)."""
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"), pool_reset_on_return=None)

    @event.listens_for(engine.sync_engine, "reset")
    def _reset(connection: Any, _: object, state: PoolResetState) -> None:
        # A connection returned after its transaction ended (commit) needs no ROLLBACK: one round trip less
        # per transaction (SQLite: one hop to aiosqlite's thread).
        if not state.terminate_only and not state.transaction_was_reset and in_transaction(connection):
            connection.rollback()

    database = make_url(url)
    if database.get_backend_name() == "sqlite":
        if database.database and database.database != ":memory:":
            file = Path(database.database)
            event.listen(engine.sync_engine, "do_connect", lambda *_: create_private(file))

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(connection: Any, _: object) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a crash of the process
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


def in_transaction(connection: Any) -> bool:
    """Whether the driver's connection under SQLAlchemy's adapter `connection` is in a transaction (True when
    the driver cannot tell)."""
    driver = connection.driver_connection
    if isinstance(flag := getattr(driver, "in_transaction", None), bool):  # aiosqlite
        return flag
    check = getattr(driver, "is_in_transaction", None)  # asyncpg
    return bool(check()) if callable(check) else True


def create_private(file: Path) -> None:
    """Create `file` empty with mode 0600 unless it exists; SQLite gives its -wal and -shm files that mode too."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):  # no folder: SQLite will say so
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class GroupCommit(Generic[T]):
    """Writes that arrive while a transaction commits share the next one (group commit).

    `await submit(item)` returns once `item` is committed, with `write`'s result for it: a lone
    write commits at once, and under load one commit serves every request that came in meanwhile.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[list[bool]]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class ClientSession(Session):
    """A session of the store: with `info["client"]`, every statement it runs on notifications (select,
    update, delete) is limited to that client's rows."""


@event.listens_for(ClientSession, "do_orm_execute")
def _only_the_clients_rows(state: ORMExecuteState) -> None:
    client = state.session.info.get("client")
    if client is not None and (state.is_select or state.is_update or state.is_delete):
        state.statement = state.statement.options(
            with_loader_criteria(NotificationRecord, NotificationRecord.client == client)
        )


class NotificationStore:
    """Notifications as rows: claim with a lease, record each attempt, purge; `for_client` adds and looks up.

    New notifications and outcomes are group-committed. On SQLite, which has one writer at a
    time, this process's writes also take turns on a lock instead of sleeping on a busy database.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, sync_session_class=ClientSession)
        single_writer = engine.dialect.name == "sqlite"
        self._leased = LEASED if single_writer else LEASED.with_for_update()
        self._counts_rows = engine.dialect.supports_sane_multi_rowcount and engine.dialect.name == "sqlite"
        self._write_lock: WriteLock = asyncio.Lock() if single_writer else contextlib.nullcontext()
        self._inserts: GroupCommit[dict[str, Any]] = GroupCommit(self._insert)
        self._outcomes: GroupCommit[Change] = GroupCommit(self._update)
        self.events = RecipientEvents(engine, self._write_lock)
        self.outbox = Outbox(engine, self._write_lock)
        """The outgoing events for EVENTS_WEBHOOK_URL (`claim`, `finish`)."""
        """Each recipient's events (`history`)."""
        self.suppressions = SuppressionList(engine, self._write_lock)
        """The addresses not sent to (`add_suppression`, `is_suppressed`, `page`, `delete`)."""

    async def _insert(self, rows: list[dict[str, Any]]) -> list[bool]:
        files = [file for row in rows for file in row.get(ATTACHMENTS_KEY, ())]
        rows = [{name: value for name, value in row.items() if name != ATTACHMENTS_KEY} for row in rows]
        async with self._write_lock, self.engine.begin() as connection:
            await connection.execute(INSERT, rows)
            if files:
                await connection.execute(insert(AttachmentRecord), files)
        return [True] * len(rows)

    async def _update(self, changes: list[Change]) -> list[bool]:
        """Apply each change whose lease `token` still holds, with the rows it brings (recipient and outgoing
        events), in one transaction: one statement per set of columns changed (executemany), whatever the number
        of notifications. Returns which were applied.

        SQLite counts the rows an executemany changed: when every change applied, that count says so and no
        lease needs reading first; otherwise the transaction is rolled back and done again, leases read. A batch
        with a change computed in SQL (`hold`) runs one statement per change."""
        if any(isinstance(value, ClauseElement) for _, _, values, _ in changes for value in values.values()):
            return await self._update_each(changes)
        if self._counts_rows:
            with contextlib.suppress(LeaseLostError):
                async with self._write_lock, self.engine.begin() as connection:
                    applied = 0
                    for columns, rows in leased_batches(changes, [True] * len(changes)).items():
                        applied += (await connection.execute(leased_update(columns), rows)).rowcount
                    if applied != len(changes):
                        raise LeaseLostError
                    await insert_rows(connection, brought_rows(changes, [True] * len(changes)))
                return [True] * len(changes)
        async with self._write_lock, self.engine.begin() as connection:
            found = await connection.execute(self._leased, {"ids": [change[0] for change in changes]})
            holders = {row[0]: row[1] for row in found}
            results = [token is not None and holders.get(each) == token for each, token, _, _ in changes]
            for columns, rows in leased_batches(changes, results).items():  # the WHERE still guards each row
                await connection.execute(leased_update(columns), rows)
            await insert_rows(connection, brought_rows(changes, results))
        return results

    async def _update_each(self, changes: list[Change]) -> list[bool]:
        """`_update`, one statement per change (for values computed in SQL)."""
        table = NotificationRecord
        results = []
        async with self._write_lock, self.engine.begin() as connection:
            for notification_id, token, values, rows in changes:
                result = await connection.execute(
                    update(table)
                    .where(table.id == notification_id, table.lease_token == token)
                    .values(**values)
                )
                results.append(bool(result.rowcount))
                if result.rowcount:
                    await insert_rows(connection, rows)
        return results

    @property
    def write_lock(self) -> WriteLock:
        """What this process's writes to the store's database take turns on (SQLite; a no-op on PostgreSQL): a
        writer sharing the engine takes it too, rather than wait on SQLite's busy timeout."""
        return self._write_lock

    async def aclose(self) -> None:
        """Close the engine's connections."""
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query on the notifications table."""
        async with self._sessions() as session:
            await session.execute(select(NotificationRecord.id).limit(1))

    async def get(self, notification_id: str) -> NotificationRecord | None:
        """The notification with `notification_id`, whichever client's it is, or None."""
        async with self._sessions() as session:
            return await session.get(NotificationRecord, notification_id)

    async def attachments(self, notification_id: str) -> list[AttachmentRecord]:
        """The files attached to notification `notification_id`, in the order they were given."""
        query = select(AttachmentRecord).where(AttachmentRecord.notification_id == notification_id)
        async with self._sessions() as session:
            return list(await session.scalars(query.order_by(AttachmentRecord.position)))

    def for_client(self, client: str) -> ClientNotifications:
        """The store as API client `client` sees it: its own notifications only."""
        return ClientNotifications(client, self.engine, self._write_lock, self._inserts)

    async def claim(
        self, limit: int, lease: float, notification_id: str | None = None
    ) -> list[NotificationRecord]:
        """Lease up to `limit` notifications that are due (or whose lease expired) for `lease` seconds.

        Each claim counts as an attempt, so an attempt cut off by a crash or a time limit counts too.
        With `notification_id`, only that notification is claimed (if it is due). Concurrent
        claimers never get the same notification (PostgreSQL: SKIP LOCKED; SQLite: one writer). Due ones are
        claimed, and returned, by priority, then by due time.
        """
        now = utcnow()
        params = {
            "now": now,
            "limit": limit,
            "token": uuid.uuid4().hex,
            "until": now + timedelta(seconds=lease),
        }
        if notification_id is not None:
            params["one"] = notification_id
        async with self._write_lock, self._sessions.begin() as session:
            claimed = list(
                await session.scalars(claim_statement(notification_id is not None, CLAIMABLE), params)
            )
        return sorted(claimed, key=lambda record: (record.priority, record.next_attempt_at))

    async def extend(self, claimed: NotificationRecord, lease: float) -> bool:
        """Push the lease on `claimed` to `lease` seconds from now (a slow send keeps its claim); False if lost."""
        until = utcnow() + timedelta(seconds=lease)
        return await self._outcomes.submit((claimed.id, claimed.lease_token, {"lease_until": until}, ()))

    async def note_unknown_outcome(self, claimed: NotificationRecord, reply: str) -> bool:
        """Note the attempt running on `claimed` as OUTCOME_UNKNOWN before it ends (its message went out, no reply
        yet): what it stays should this process end first; `record` replaces it. False if the lease was lost."""
        attempt = {"at": utcnow().isoformat(), "reply": reply, "outcome": OUTCOME_UNKNOWN}
        return await self._outcomes.submit(
            (claimed.id, claimed.lease_token, {"attempts": [*claimed.attempts, attempt]}, ())
        )

    async def record(self, claimed: NotificationRecord, outcome: Outcome) -> bool:
        """Record `outcome` of the attempt on `claimed`; False if its lease was lost meanwhile."""
        now = utcnow()
        attempt = {
            "at": now.isoformat(),
            "reply": outcome.reply,
            "outcome": OUTCOME_UNKNOWN if outcome.unknown else str(outcome.status),
        }
        refused = {**claimed.refused, **(outcome.refused or {})}
        for address in outcome.accepted:
            refused.pop(address, None)
        values: dict[str, Any] = {
            "status": outcome.status,
            "attempts": [*claimed.attempts, attempt],
            "accepted": [*claimed.accepted, *outcome.accepted],
            "refused": refused,
            "pending": list(claimed.pending if outcome.pending is None else outcome.pending),
            "next_attempt_at": outcome.next_attempt_at,
            "last_error": outcome.error,
            "lease_token": None,
            "lease_until": None,
            "finished_at": now if outcome.status in FINISHED else None,
            "held_since": None,
        }
        return await self._outcomes.submit((claimed.id, claimed.lease_token, values, outcome.rows))

    async def hold(self, claimed: NotificationRecord, until: datetime, why: str) -> bool:
        """Put `claimed` back until `until` without counting its claim as an attempt (a sending limit or a
        throttling reply held it back, `why` says which: its last error): queued again, or retrying if it had
        been tried. False if the lease was lost."""
        table = NotificationRecord
        values: dict[str, Any] = {
            "status": case((table.attempt_count <= 1, Status.QUEUED), else_=Status.RETRYING),
            "attempt_count": table.attempt_count - 1,
            "next_attempt_at": until,
            "lease_token": None,
            "lease_until": None,
            "last_error": why,
            "held_since": func.coalesce(table.held_since, utcnow()),
        }
        return await self._outcomes.submit((claimed.id, claimed.lease_token, values, ()))

    async def due(self, limit: int) -> list[tuple[str, datetime, int]]:
        """Up to `limit` notifications due now, or whose lease expired, each with the time it became due and its
        priority (`Priority.rank`), highest priority first (for a sweeper to publish)."""
        now = utcnow()
        table = NotificationRecord
        since = case((table.status == Status.SENDING, table.lease_until), else_=table.next_attempt_at)
        query = (
            select(table.id, since, table.priority)
            .where(
                or_(
                    and_(table.status.in_(CLAIMABLE), table.next_attempt_at <= now),
                    and_(table.status == Status.SENDING, table.lease_until < now),
                )
            )
            .order_by(table.priority, table.next_attempt_at)
            .limit(limit)
        )
        async with self._sessions() as session:
            return [(row[0], row[1], row[2]) for row in await session.execute(query)]

    async def backlog(self) -> Backlog:
        """How many notifications wait or are being sent, and when the oldest due one became due."""
        table = NotificationRecord
        unfinished = (Status.QUEUED, Status.SENDING, Status.RETRYING)
        counts = select(table.status, func.count()).where(table.status.in_(unfinished)).group_by(table.status)
        now = utcnow()
        oldest = select(func.min(table.next_attempt_at)).where(
            table.status.in_(CLAIMABLE), table.next_attempt_at <= now
        )
        later = select(func.count()).where(table.status == Status.QUEUED, table.next_attempt_at > now)
        async with self._sessions() as session:
            found = {Status(status): int(count) for status, count in await session.execute(counts)}
            oldest_due = await session.scalar(oldest)
            scheduled = int(await session.scalar(later) or 0)
        return Backlog({status: found.get(status, 0) for status in unfinished}, oldest_due, scheduled)

    async def purge(self, body_retention: float, row_retention: float, key_ttl: float) -> tuple[int, int]:
        """Delete the content of notifications sent `body_retention` seconds ago and the records finished
        `row_retention` seconds ago; forget idempotency keys older than `key_ttl`. Returns (bodies, rows).
        """
        now = utcnow()
        table = NotificationRecord
        async with self._write_lock, self._sessions.begin() as session:
            content_gone = or_(
                and_(
                    table.status == Status.SENT, table.finished_at <= now - timedelta(seconds=body_retention)
                ),
                and_(table.status.in_(FINISHED), table.finished_at <= now - timedelta(seconds=row_retention)),
            )
            await session.execute(
                delete(AttachmentRecord)
                .where(AttachmentRecord.notification_id.in_(select(table.id).where(content_gone)))
                .execution_options(synchronize_session=False)
            )
            bodies = await session.execute(
                update(table)
                .where(
                    table.status == Status.SENT,
                    table.finished_at <= now - timedelta(seconds=body_retention),
                    table.content.is_not(None),
                )
                .values(content=None)
                .execution_options(synchronize_session=False)
            )
            rows = await session.execute(
                delete(table)
                .where(
                    table.status.in_(FINISHED), table.finished_at <= now - timedelta(seconds=row_retention)
                )
                .execution_options(synchronize_session=False)
            )
            await purge_feedback(session, now - timedelta(seconds=row_retention))
            await session.execute(
                update(table)
                .where(
                    table.idempotency_key.is_not(None), table.created_at <= now - timedelta(seconds=key_ttl)
                )
                .values(idempotency_key=None)
                .execution_options(synchronize_session=False)
            )
        return int(getattr(bodies, "rowcount", 0)), int(getattr(rows, "rowcount", 0))


class ClientNotifications:
    """One API client's notifications: add, look up, list, retry. Every statement runs in a session bound
    to the client (`ClientSession`), so it reads and changes only that client's rows, whatever it selects;
    another client's notification is as absent as an unknown one."""

    def __init__(
        self,
        client: str,
        engine: AsyncEngine,
        write_lock: WriteLock,
        inserts: GroupCommit[dict[str, Any]],
    ) -> None:
        self.client = client
        self._sessions = async_sessionmaker(
            engine, expire_on_commit=False, sync_session_class=ClientSession, info={"client": client}
        )
        self._write_lock = write_lock
        self._inserts = inserts

    async def add(
        self,
        notification_id: str,
        content: dict[str, Any],
        recipients: Sequence[str],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        key_ttl: float = 86400,
        request_id: str | None = None,
        send_at: datetime | None = None,
        priority: Priority = Priority.NORMAL,
        attachments: Sequence[tuple[str, str, bytes]] = (),
    ) -> Added:
        """Commit a new `queued` notification, created by request `request_id`, due at `send_at` (None: now),
        with `attachments` (filename, content type, bytes) in the same transaction.

        With `idempotency_key`, a notification this client keeps under the same key (younger than
        `key_ttl` seconds) is answered instead, with its current status. Raises
        `IdempotencyKeyReusedError` when that one was created from another `request_hash`.
        """
        now = utcnow()
        record = {
            "id": notification_id,
            "client": self.client,
            "status": Status.QUEUED,
            "content": content,
            "pending": list(recipients),
            "accepted": [],
            "refused": {},
            "attempts": [],
            "attempt_count": 0,
            "next_attempt_at": max(now, send_at) if send_at is not None else now,
            "priority": priority.rank,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "request_id": request_id,
            "created_at": now,
        }
        files = [
            {
                "notification_id": notification_id,
                "position": position,
                "filename": name,
                "content_type": kind,
                "content": data,
            }
            for position, (name, kind, data) in enumerate(attachments)
        ]
        new = Added(notification_id, Status.QUEUED, created=True)
        if idempotency_key is None:
            await self._inserts.submit({**record, ATTACHMENTS_KEY: files} if files else record)
            return new
        for _ in range(3):
            try:
                async with self._write_lock, self._sessions.begin() as session:
                    session.add(NotificationRecord(**record))
                    await session.flush()  # the notification first: its attachments name it
                    session.add_all(AttachmentRecord(**file) for file in files)
                return new
            except IntegrityError:
                pass
            existing = await self._by_key(idempotency_key)
            if existing is None:
                continue  # purged in between: try again
            if existing.created_at < now - timedelta(seconds=key_ttl):
                await self._forget_key(existing.id)
                continue
            if existing.request_hash != request_hash:
                raise IdempotencyKeyReusedError(idempotency_key)
            return Added(existing.id, Status(existing.status), created=False)
        raise RuntimeError(f"could not store notification {notification_id} under its idempotency key")

    async def _by_key(self, key: str) -> NotificationRecord | None:
        async with self._sessions() as session:
            found: NotificationRecord | None = await session.scalar(
                select(NotificationRecord).where(NotificationRecord.idempotency_key == key)
            )
            return found

    async def _forget_key(self, notification_id: str) -> None:
        async with self._write_lock, self._sessions.begin() as session:
            await session.execute(
                update(NotificationRecord)
                .where(NotificationRecord.id == notification_id)
                .values(idempotency_key=None)
            )

    async def get(self, notification_id: str) -> NotificationRecord | None:
        """This client's notification with `notification_id`, or None."""
        async with self._sessions() as session:
            return await session.get(NotificationRecord, notification_id)

    async def page(
        self, status: Status | None = None, *, after: str | None = None, limit: int = 50
    ) -> list[NotificationRecord]:
        """Up to `limit` of this client's notifications (optionally of one `status`), ordered by id, after id `after`."""
        query = select(NotificationRecord).order_by(NotificationRecord.id).limit(limit)
        if status is not None:
            query = query.where(NotificationRecord.status == status)
        if after is not None:
            query = query.where(NotificationRecord.id > after)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def cancel(self, notification_id: str) -> Status | None:
        """Cancel this client's notification unless it started sending: one conditional UPDATE, so a sender
        claiming it at the same moment either finds it cancelled or makes the cancel fail. Returns its status
        after the call (`cancelled` when it is, now or before), None when there is no such notification."""
        table = NotificationRecord
        cancel = (
            update(table)
            .where(table.id == notification_id, table.status.in_(CLAIMABLE))
            .values(status=Status.CANCELLED, finished_at=utcnow(), lease_token=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        async with self._write_lock, self._sessions.begin() as session:
            if getattr(await session.execute(cancel), "rowcount", 0):
                return Status.CANCELLED
            status = await session.scalar(select(table.status).where(table.id == notification_id))
        return None if status is None else Status(status)

    async def retry(self, notification_id: str) -> bool:
        """Queue a `failed` notification again (its content must still be kept); False otherwise."""
        table = NotificationRecord
        async with self._write_lock, self._sessions.begin() as session:
            failed = await session.get(table, notification_id, with_for_update=True)
            if failed is None or failed.status != Status.FAILED or failed.content is None:
                return False
            failed.status = Status.QUEUED
            failed.attempt_count = 0
            failed.next_attempt_at = utcnow()
            failed.finished_at = None
            return True
