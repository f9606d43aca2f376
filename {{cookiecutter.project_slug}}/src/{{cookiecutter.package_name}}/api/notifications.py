"""POST /notifications: accept a notification, answer 202, send it afterwards."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from ..delivery import DeliveryUnavailableError
from ..notifications import Notification, NotificationContent
from ..settings import ApiSettings
from .deps import DeliveryDep, SettingsDep, require_api_key
from .recipients import check_recipients

logger = logging.getLogger(__name__)
router = APIRouter(tags=["notifications"])


class NotificationAccepted(BaseModel):
    """The answer to an accepted notification."""

    id: str
    status: Literal["queued"] = "queued"


def check_limits(content: NotificationContent, limits: ApiSettings) -> None:
    """Reject, as a 422, notifications over the configured size limits."""
    errors = []
    recipients = len(content.to) + len(content.cc)
    if recipients > limits.max_recipients:
        errors.append(
            {
                "type": "too_many_recipients",
                "loc": ("body", "to"),
                "msg": f"{recipients} recipients (to + cc); at most {limits.max_recipients} allowed (MAX_RECIPIENTS)",
            }
        )
    size = len(content.body.encode())
    if size > limits.max_body_bytes:
        errors.append(
            {
                "type": "body_too_large",
                "loc": ("body", "body"),
                "msg": f"body is {size} bytes; at most {limits.max_body_bytes} allowed (MAX_BODY_BYTES)",
            }
        )
    if errors:
        raise RequestValidationError(errors)


@router.post(
    "/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"description": "Missing or invalid API key"},
        503: {"description": "Delivery cannot take notifications now; retry later"},
    },
)
async def create_notification(
    content: NotificationContent, settings: SettingsDep, delivery: DeliveryDep
) -> NotificationAccepted:
    """Queue an email to `to` (and `cc`); it is sent after this answer, with the id in X-Notification-ID."""
    check_limits(content, settings.api)
    check_recipients(content, settings.api)
    notification = Notification.accept(content)
    try:
        await delivery.submit(notification)
    except DeliveryUnavailableError as error:
        logger.error("notification %s not accepted: %s", notification.id, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "delivery is unavailable; nothing was queued, retry later"
        ) from None
    logger.info(
        "notification %s queued for %d recipient(s)", notification.id, len(content.to) + len(content.cc)
    )
    return NotificationAccepted(id=notification.id)
