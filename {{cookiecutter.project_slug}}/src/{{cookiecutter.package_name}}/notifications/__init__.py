"""What a notification is (`content.py`) and how it becomes an email (`compose.py`)."""

from .compose import Composed, Composer, bare, display_id, message_id
from .content import MAX_ADDRESSES, Notification, NotificationContent, NotificationRequest

__all__ = [
    "MAX_ADDRESSES",
    "Composed",
    "Composer",
    "Notification",
    "NotificationContent",
    "NotificationRequest",
    "bare",
    "display_id",
    "message_id",
]
