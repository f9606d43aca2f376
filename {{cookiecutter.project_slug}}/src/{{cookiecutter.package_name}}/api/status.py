"""Looking notifications up: GET /notifications/{id}, GET /notifications?status=..., POST .../retry, DELETE (cancel)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from ..store import NotificationRecord, Priority, Status
from .deps import ClientStoreDep, DeliveryDep, authenticated_client

router = APIRouter(tags=["notifications"], dependencies=[Depends(authenticated_client)])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No notification with this id of this client (never accepted, another client's, or deleted by retention)"
    }
}


class Attempt(BaseModel):
    """One attempt to send: when, what the server answered, and how it ended."""

    at: datetime
    reply: str
    outcome: str | None = Field(
        default=None,
        description=(
            "The status the attempt led to (`sent`, `retrying`, `failed`), or `outcome_unknown`: the message went "
            "out but no reply came, so the server may have accepted it (it is sent once more, with the same "
            "Message-ID, unless DELIVERY_RETRY_UNKNOWN_OUTCOME=false). None for attempts recorded before outcomes were."
        ),
    )


class NotificationStatus(BaseModel):
    """What became of a notification."""

    id: str
    status: Status
    priority: Priority
    created_at: datetime
    attempts: list[Attempt] = Field(description="Every attempt, oldest first, with the server's reply.")
    accepted: list[str] = Field(description="Recipients the server accepted.")
    refused: dict[str, str] = Field(description="Recipients the server refused, with its reply.")
    pending: list[str] = Field(description="Recipients still to be sent to.")
    next_attempt_at: datetime | None = Field(
        description=(
            "When the next attempt is due (queued or retrying): its send_at, or, held back by a sending limit or "
            "a throttling reply, the earliest time it may go."
        )
    )
    finished_at: datetime | None = Field(description="When it was sent, failed for good or was cancelled.")
    last_error: str | None = Field(description="The last failure, one line (no secrets).")
    request_id: str | None = Field(description="The X-Request-ID of the request that created it.")

    @classmethod
    def of(cls, record: NotificationRecord) -> NotificationStatus:
        finished = record.status in (Status.SENT, Status.FAILED, Status.CANCELLED)
        return cls(
            id=record.id,
            status=Status(record.status),
            priority=list(Priority)[record.priority],
            created_at=record.created_at,
            attempts=[Attempt.model_validate(attempt) for attempt in record.attempts],
            accepted=record.accepted,
            refused=record.refused,
            pending=[] if record.status == Status.SENT else record.pending,
            next_attempt_at=None if finished else record.next_attempt_at,
            finished_at=record.finished_at,
            last_error=record.last_error,
            request_id=record.request_id,
        )


class NotificationPage(BaseModel):
    """One page of notifications; pass `next` as `after` for the following page."""

    items: list[NotificationStatus]
    next: str | None


@router.get("/notifications/{notification_id}", responses=NOT_FOUND)
async def get_notification(notification_id: str, store: ClientStoreDep) -> NotificationStatus:
    """The status of one notification, its attempts and the server's replies."""
    record = await store.get(notification_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id}")
    return NotificationStatus.of(record)


@router.get("/notifications")
async def list_notifications(
    store: ClientStoreDep,
    status_filter: Annotated[Status | None, Query(alias="status", description="Only this status.")] = None,
    after: Annotated[str | None, Query(description="The `next` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> NotificationPage:
    """The client's notifications ordered by id, optionally of one status, `limit` at a time."""
    records = await store.page(status_filter, after=after, limit=limit)
    return NotificationPage(
        items=[NotificationStatus.of(record) for record in records],
        next=records[-1].id if len(records) == limit else None,
    )


@router.post(
    "/notifications/{notification_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"description": "Not failed, or its content was deleted"}},
)
async def retry_notification(
    notification_id: str, store: ClientStoreDep, delivery: DeliveryDep
) -> NotificationStatus:
    """Queue a `failed` notification again (to the recipients that did not get it), with a fresh attempt budget."""
    if not await store.retry(notification_id):
        if await store.get(notification_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id}")
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"notification {notification_id} is not failed (or its content was deleted)",
        )
    await delivery.submit(notification_id)
    record = await store.get(notification_id)
    assert record is not None
    return NotificationStatus.of(record)


@router.delete(
    "/notifications/{notification_id}",
    responses={**NOT_FOUND, 409: {"description": "It is being sent, or was sent or failed"}},
)
async def cancel_notification(notification_id: str, store: ClientStoreDep) -> NotificationStatus:
    """Cancel a notification that has not started sending (queued, scheduled, held or retrying): `cancelled`, for
    good. A sender claiming it at the same moment either finds it cancelled or makes this a 409."""
    found = await store.cancel(notification_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id}")
    if found != Status.CANCELLED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"notification {notification_id} is {found}: too late to cancel"
        )
    record = await store.get(notification_id)
    assert record is not None
    return NotificationStatus.of(record)
