"""When a posted notification is due: its `send_at`, now if absent or past, never beyond MAX_SCHEDULE_AHEAD."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.exceptions import RequestValidationError

from ..notifications import NotificationContent
from ..settings import ApiSettings
from ..store import utcnow


def due_time(content: NotificationContent, settings: ApiSettings) -> datetime | None:
    """`content.send_at` (None: now); a 422 when it is more than MAX_SCHEDULE_AHEAD seconds ahead."""
    send_at = content.send_at
    if send_at is None:
        return None
    horizon = utcnow() + timedelta(seconds=settings.max_schedule_ahead)
    if send_at > horizon:
        raise RequestValidationError(
            [
                {
                    "type": "send_at_too_far",
                    "loc": ("body", "send_at"),
                    "msg": (
                        f"send_at is more than {settings.max_schedule_ahead} s ahead (MAX_SCHEDULE_AHEAD); "
                        f"send it at {horizon.isoformat(timespec='seconds')} at the latest"
                    ),
                }
            ]
        )
    return send_at
