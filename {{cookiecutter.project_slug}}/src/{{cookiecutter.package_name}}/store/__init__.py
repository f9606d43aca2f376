"""The notification store: every accepted notification is a row before the API answers 202."""

from .attachments import AttachmentRecord
from .events import RecipientEventRecord
from .models import NotificationRecord, Priority, Status
from .outbox import OutgoingEventRecord
from .rate_limits import RateLimitHit
from .repository import (
    OUTCOME_UNKNOWN,
    Added,
    Backlog,
    ClientNotifications,
    IdempotencyKeyReusedError,
    NotificationStore,
    Outcome,
    open_engine,
    utcnow,
)
from .schema import SchemaError, check_schema, upgrade
from .settings import StoreSettings
from .suppressions import Reason, Suppression, SuppressionList, normalize

__all__ = [
    "OUTCOME_UNKNOWN",
    "Added",
    "AttachmentRecord",
    "Backlog",
    "ClientNotifications",
    "IdempotencyKeyReusedError",
    "NotificationRecord",
    "NotificationStore",
    "Outcome",
    "OutgoingEventRecord",
    "Priority",
    "RateLimitHit",
    "Reason",
    "RecipientEventRecord",
    "SchemaError",
    "Status",
    "StoreSettings",
    "Suppression",
    "SuppressionList",
    "check_schema",
    "normalize",
    "open_engine",
    "upgrade",
    "utcnow",
]
