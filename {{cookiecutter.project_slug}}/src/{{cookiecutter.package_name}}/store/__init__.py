"""The notification store: every accepted notification is a row before the API answers 202."""

from .models import NotificationRecord, Priority, Status
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

__all__ = [
    "OUTCOME_UNKNOWN",
    "Added",
    "Backlog",
    "ClientNotifications",
    "IdempotencyKeyReusedError",
    "NotificationRecord",
    "NotificationStore",
    "Outcome",
    "Priority",
    "RateLimitHit",
    "SchemaError",
    "Status",
    "StoreSettings",
    "check_schema",
    "open_engine",
    "upgrade",
    "utcnow",
]
