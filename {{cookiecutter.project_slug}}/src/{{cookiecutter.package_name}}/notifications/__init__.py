"""What a notification is, and how it becomes an email."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal

from fastapi_mail import MessageSchema, MessageType
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, NameEmail

from ..mail import NOTIFICATION_ID_HEADER
from ..mail.core.headers import HeaderText
from ..store.models import Priority
from .templates import EmailTemplates

MAX_ADDRESSES = 1000
"""Static bound on `to` and on `cc`, checked while parsing; MAX_RECIPIENTS is the configured one."""
TEMPLATES = EmailTemplates(Path(__file__).parents[1] / "templates" / "email")


class NotificationContent(BaseModel):
    """The fields a caller sends to `POST /notifications`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: list[EmailStr] = Field(min_length=1, max_length=MAX_ADDRESSES, description="Recipients.")
    cc: list[EmailStr] = Field(default_factory=list, max_length=MAX_ADDRESSES, description="Copy recipients.")
    reply_to: EmailStr | None = Field(default=None, description="Address replies go to.")
    subject: HeaderText = Field(min_length=1, max_length=998, description="Subject line; no line breaks.")
    body: str = Field(min_length=1, description="Plain-text body.")
    format: Literal["html", "text"] = Field(
        default="html", description="`html`: text plus an HTML version from the template; `text`: text only."
    )
    send_at: AwareDatetime | None = Field(
        default=None,
        description="When to send it (ISO 8601 with offset); absent or past: now; at most MAX_SCHEDULE_AHEAD ahead.",
    )
    priority: Priority = Field(
        default=Priority.NORMAL, description="`high` ones due are sent before `normal` and `low` ones."
    )


class Notification(NotificationContent):
    """A notification accepted for delivery; `id` travels in the X-Notification-ID header."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def accept(cls, content: NotificationContent) -> Notification:
        """`content` with a new id, without validating the addresses a second time."""
        return cls.model_construct(**dict(content))


def bare(addresses: list[str]) -> list[NameEmail]:
    """Addresses without display names (pydantic would invent one from the local part)."""
    return [NameEmail(name=address, email=address) for address in addresses]


def display_id(notification_id: str) -> str:
    """`notification_id` as a reader sees it, in groups of 8 characters joined by hyphens ("1f3c2b4a-9d8e7f61-...").

    Printed bare, a hex id that starts with 1 or 3 and has no 0 (1.7 % of them) reads as a Bitcoin address to
    SpamAssassin (PDS_BTC_ID: 26 to 35 base58 characters starting with 1 or 3); no group is that long.
    """
    return "-".join(notification_id[start : start + 8] for start in range(0, len(notification_id), 8))


def message_id(notification_id: str, sender: str) -> str:
    """The Message-ID of a notification: `<id@sender's domain>`, the same on every attempt."""
    return f"<{notification_id}@{sender.rpartition('@')[2]}>"


def to_message(notification: Notification, service_name: str, sender: str) -> MessageSchema:
    """The email for `notification` from `sender`: plain text, plus HTML from the template when asked."""
    # fastapi-mail takes a lowercase "message-id" as the Message-ID (and makes none of its own).
    headers = {"message-id": message_id(notification.id, sender), NOTIFICATION_ID_HEADER: notification.id}
    to, cc = bare(notification.to), bare(notification.cc)
    reply_to = bare([notification.reply_to] if notification.reply_to else [])
    if notification.format == "text":
        return MessageSchema(
            recipients=to,
            cc=cc,
            reply_to=reply_to,
            subject=notification.subject,
            body=notification.body,
            subtype=MessageType.plain,
            headers=headers,
        )
    context = {
        "subject": notification.subject,
        "body": notification.body,
        "service_name": service_name,
        "notification_id": notification.id,
        "notification_ref": display_id(notification.id),  # what the layouts print (see `display_id`)
    }
    return TEMPLATES.message(
        "notification",
        context,
        recipients=to,
        cc=cc,
        reply_to=reply_to,
        subject=notification.subject,
        headers=headers,
    )
