"""The suppression list over HTTP: GET /suppressions (paged, by reason), POST /suppressions, DELETE /suppressions/{address}.

The list is the service's, shared by every API client: an address that bounces or complains hurts
the sending domain whoever sends to it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, EmailStr, Field

from ..store import Reason, Suppression
from .deps import ClientDep, StoreDep, authenticated_client

logger = logging.getLogger(__name__)
router = APIRouter(tags=["suppressions"], dependencies=[Depends(authenticated_client)])

NOT_LISTED: dict[int | str, dict[str, Any]] = {404: {"description": "The address is not on the list."}}


class SuppressionRequest(BaseModel):
    """An address to stop sending to."""

    address: EmailStr = Field(description="Kept lowercase: the list ignores case.")
    reason: Reason = Field(default=Reason.MANUAL, description="Why: `manual` unless said otherwise.")


class SuppressedAddress(BaseModel):
    """An address on the suppression list."""

    address: str = Field(description="Normalized: lowercase.")
    reason: Reason
    since: datetime
    event: dict[str, Any] | None = Field(
        description="What put it there: the bounce or complaint (source, notification, status, diagnostic), or the request."
    )

    @classmethod
    def of(cls, entry: Suppression) -> SuppressedAddress:
        return cls(address=entry.address, reason=entry.reason, since=entry.since, event=entry.event)


class SuppressionPage(BaseModel):
    """One page of the list, ordered by address; pass `next` as `after` for the following page."""

    items: list[SuppressedAddress]
    next: str | None


@router.get("/suppressions")
async def list_suppressions(
    store: StoreDep,
    reason: Annotated[Reason | None, Query(description="Only this reason.")] = None,
    after: Annotated[str | None, Query(description="The `next` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SuppressionPage:
    """The suppressed addresses, `limit` at a time, optionally of one reason."""
    entries = await store.suppressions.page(reason, after=after, limit=limit)
    return SuppressionPage(
        items=[SuppressedAddress.of(entry) for entry in entries],
        next=entries[-1].address if len(entries) == limit else None,
    )


@router.post(
    "/suppressions",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Already on the list: its first reason and date are kept."}},
)
async def add_suppression(
    request: SuppressionRequest, store: StoreDep, client: ClientDep, response: Response
) -> SuppressedAddress:
    """Stop sending to an address (201); an address already listed answers 200 with its entry."""
    event = {"source": "api", "client": client}
    if await store.suppressions.add_suppression(request.address, request.reason, event):
        logger.info("suppression list: %s added by client %s (%s)", request.address, client, request.reason)
    else:
        response.status_code = status.HTTP_200_OK
    entry = await store.suppressions.get(request.address)
    if entry is None:  # deleted in between
        raise HTTPException(status.HTTP_409_CONFLICT, f"{request.address} was removed meanwhile; send again")
    return SuppressedAddress.of(entry)


@router.delete("/suppressions/{address}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_LISTED)
async def delete_suppression(address: str, store: StoreDep, client: ClientDep) -> Response:
    """Send to the address again (204); 404 when it is not on the list."""
    if not await store.suppressions.delete(address):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{address} is not on the suppression list")
    logger.info("suppression list: %s removed by client %s", address, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
