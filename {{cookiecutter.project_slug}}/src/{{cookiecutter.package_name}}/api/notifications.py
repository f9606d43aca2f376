"""POST /notifications: commit a notification to the store, answer 202, send it afterwards."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from ..notifications import Composer, Notification, NotificationContent, NotificationRequest
from ..notifications.attachments import attachment_problems, sanitized_filename
from ..notifications.templates import TemplateRequestError
from ..observability.logs import REQUEST_ID, log_context
from ..settings import ApiSettings
from ..store import IdempotencyKeyReusedError, Status
from .deps import ClientStoreDep, ComposerDep, DeliveryDep, SettingsDep, authenticated_client
from .recipients import check_recipients
from .scheduling import due_time

logger = logging.getLogger(__name__)
router = APIRouter(tags=["notifications"], dependencies=[Depends(authenticated_client)])


class NotificationAccepted(BaseModel):
    """The answer to an accepted notification."""

    id: str
    status: Status = Field(
        default=Status.QUEUED,
        description="`queued` for a new notification; for a repeat of an Idempotency-Key, the current status.",
    )


def check_limits(content: NotificationContent, limits: ApiSettings) -> None:
    """Reject, as a 422, notifications over the configured size limits."""
    errors: list[dict[str, object]] = []
    recipients = len(content.to) + len(content.cc)
    if recipients > limits.max_recipients:
        errors.append(
            {
                "type": "too_many_recipients",
                "loc": ("body", "to"),
                "msg": f"{recipients} recipients (to + cc); at most {limits.max_recipients} allowed (MAX_RECIPIENTS)",
            }
        )
    size = len(content.body.encode()) if content.body else 0
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


def request_hash(request: NotificationRequest) -> str:
    """A digest of the request body, to recognise a repeat under the same Idempotency-Key (attachments by
    their digests: no base64 copy of them is made)."""
    content = request.content()
    # send_at and priority count when given: a body without them hashes as it did before they existed.
    unset = {"send_at", "priority"} - content.model_fields_set
    canonical = json.dumps(
        content.model_dump(mode="json", exclude=unset), sort_keys=True, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode())
    for each in request.attachments:
        digest.update(f"\0{each.filename}\0{each.content_type}\0".encode())
        digest.update(hashlib.sha256(each.content).digest())
    return digest.hexdigest()


def check_composable(notification: Notification, request: NotificationRequest, composer: Composer) -> None:
    """Reject, as a 422 naming the field, what could not be sent: an unknown template or locale, data a
    template misses, bulk mail without an unsubscribe link, attachments too large or of a refused type."""
    settings = composer.settings
    errors = attachment_problems(
        request.attachments, settings.max_attachment_bytes, settings.refused_attachment_types
    )
    try:
        composer.check(notification)
    except TemplateRequestError as problem:
        errors.insert(
            0, {"type": f"{problem.field}_invalid", "loc": ("body", problem.field), "msg": str(problem)}
        )
    if errors:
        raise RequestValidationError(errors)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description=(
            "Any unique string (a UUID), per client: a repeat with the same key and body answers the first id "
            "and its status, and sends nothing."
        ),
    ),
]


@router.post(
    "/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    responses={401: {"description": "Missing or invalid API key"}},
)
async def create_notification(
    request: Request,
    body: NotificationRequest,
    settings: SettingsDep,
    store: ClientStoreDep,
    delivery: DeliveryDep,
    composer: ComposerDep,
    idempotency_key: IdempotencyKey = None,
) -> NotificationAccepted:
    """Queue an email to `to` (and `cc`): answered once it is committed, sent afterwards, with the id in X-Notification-ID."""
    content = body.content()
    check_limits(content, settings.api)
    check_recipients(content, settings.api)
    send_at = due_time(content, settings.api)
    notification = Notification.accept(content)
    check_composable(notification, body, composer)
    stored = content.model_dump(mode="json")
    if body.attachments:
        stored["attachments"] = len(body.attachments)  # tells the sender to load them
    try:
        added = await store.add(
            notification.id,
            stored,
            [*content.to, *content.cc],
            idempotency_key=idempotency_key,
            request_hash=request_hash(body) if idempotency_key else None,
            key_ttl=settings.store.idempotency_key_ttl,
            request_id=REQUEST_ID.get(),
            send_at=send_at,
            priority=content.priority,
            attachments=[
                (sanitized_filename(each.filename), each.content_type.lower(), each.content)
                for each in body.attachments
            ],
        )
    except IdempotencyKeyReusedError:
        raise RequestValidationError(
            [
                {
                    "type": "idempotency_key_reused",
                    "loc": ("header", "Idempotency-Key"),
                    "msg": "this Idempotency-Key was used with another body; use a new key for a new notification",
                }
            ]
        ) from None
    request.state.notification_outcome = "queued" if added.created else "idempotent_repeat"  # for the metrics
    if added.created:
        await delivery.submit(added.id, content.priority)
        with log_context(added.id):
            logger.info(
                "notification %s queued for %d recipient(s) of client %s",
                added.id,
                len(content.to) + len(content.cc),
                store.client,
            )
    return NotificationAccepted(id=added.id, status=added.status)
