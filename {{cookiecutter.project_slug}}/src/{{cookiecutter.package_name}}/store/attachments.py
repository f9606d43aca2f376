"""The files attached to notifications: one row each, bytes as they are (no base64 in the database)."""

from __future__ import annotations

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base

__all__ = ["ATTACHMENTS_KEY", "AttachmentRecord"]

ATTACHMENTS_KEY = "_attachments"
"""Where a new record's attachment rows travel to the insert that commits them with it."""


class AttachmentRecord(Base):
    """One attachment of a notification, deleted with its content (`NotificationStore.purge`)."""

    __tablename__ = "attachments"

    notification_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    content: Mapped[bytes] = mapped_column(LargeBinary)
