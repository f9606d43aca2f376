"""The store's statements for batches, built once (SQLAlchemy compiles each once per process) and executed with
a list of parameter sets (executemany): the inserts of a group commit, the outcomes and lease renewals of many
notifications, a claim."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, Update, and_, bindparam, or_, select, update
from sqlalchemy.sql.selectable import ExecutableReturnsRows

from .models import NotificationRecord, Status

TABLE = cast(Table, NotificationRecord.__table__)
INSERT = TABLE.insert()
"""Built once: executed with a list of rows, compiled once per process (an ORM-enabled insert per batch costs more)."""
LEASED = select(TABLE.c.id, TABLE.c.lease_token).where(TABLE.c.id.in_(bindparam("ids", expanding=True)))
"""Who holds the leases of some notifications (on PostgreSQL, locked until the transaction ends)."""


@functools.cache
def leased_update(columns: tuple[str, ...]) -> Update:
    """`UPDATE notifications SET <columns> WHERE id = :id_ AND lease_token = :token_`, its new values bound as
    `new_<column>`: one statement for a whole batch of changes to the same columns (executemany)."""
    values = {name: bindparam(f"new_{name}", type_=TABLE.c[name].type) for name in columns}
    return (
        update(TABLE)
        .where(TABLE.c.id == bindparam("id_"), TABLE.c.lease_token == bindparam("token_"))
        .values(values)
    )


@functools.cache
def claim_statement(one: bool, claimable: tuple[Status, ...]) -> ExecutableReturnsRows:
    """The claim of `NotificationStore.claim` (of the notification `:one` only, if `one`), built and compiled once:
    `claimable` ones due at `:now` or whose lease expired, at most `:limit`, leased with `:token` until `:until`."""
    now = bindparam("now", type_=TABLE.c.next_attempt_at.type)
    due = or_(
        and_(TABLE.c.status.in_(claimable), TABLE.c.next_attempt_at <= now),
        and_(TABLE.c.status == Status.SENDING, TABLE.c.lease_until < now),
    )
    if one:
        due = and_(due, TABLE.c.id == bindparam("one"))
    candidates = (
        select(TABLE.c.id)
        .where(due)
        .order_by(TABLE.c.priority, TABLE.c.next_attempt_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(TABLE)
        .where(TABLE.c.id.in_(candidates), due)
        .values(
            status=Status.SENDING,
            lease_token=bindparam("token"),
            lease_until=bindparam("until", type_=TABLE.c.lease_until.type),
            attempt_count=TABLE.c.attempt_count + 1,
        )
        .returning(*TABLE.c)
    )
    return select(NotificationRecord).from_statement(claim)


def leased_batches(
    changes: Sequence[tuple[str, str | None, dict[str, Any], object]], held: list[bool]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The parameters of `leased_update` for each set of columns changed, for the `changes` whose lease is `held`."""
    batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (notification_id, token, values, _), mine in zip(changes, held, strict=True):
        if mine:
            row = {f"new_{name}": value for name, value in values.items()}
            batches.setdefault(tuple(values), []).append({"id_": notification_id, "token_": token, **row})
    return batches


class LeaseLostError(Exception):
    """Some change of a batch found its lease taken (the batch is done again, leases read first)."""
