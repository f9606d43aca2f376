"""What a notification holds, as callers send it: a subject and body, or a template with data."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, model_validator

from ..mail.core.headers import HeaderText
from ..store.models import Priority
from .attachments import AttachmentIn

__all__ = ["MAX_ADDRESSES", "Notification", "NotificationContent", "NotificationRequest"]

MAX_ADDRESSES = 1000
"""Static bound on `to` and on `cc`, checked while parsing; MAX_RECIPIENTS is the configured one."""
MAX_ATTACHMENTS = 100
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class NotificationContent(BaseModel):
    """What a notification holds: recipients, and `subject` + `body` or `template` + `data` (+ `locale`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: list[EmailStr] = Field(min_length=1, max_length=MAX_ADDRESSES, description="Recipients.")
    cc: list[EmailStr] = Field(default_factory=list, max_length=MAX_ADDRESSES, description="Copy recipients.")
    reply_to: EmailStr | None = Field(default=None, description="Address replies go to.")
    subject: HeaderText | None = Field(
        default=None,
        min_length=1,
        max_length=998,
        description="Subject line; no line breaks (without `template`).",
    )
    body: str | None = Field(default=None, min_length=1, description="Plain-text body (without `template`).")
    template: str | None = Field(
        default=None,
        pattern=TEMPLATE_NAME,
        description="Name of a template (a folder of MAIL_TEMPLATES_DIR), instead of `subject` and `body`.",
    )
    data: dict[str, Any] = Field(
        default_factory=dict, description="The template's variables (only ever data, never template source)."
    )
    locale: str | None = Field(
        default=None,
        max_length=35,
        description="BCP 47 language of the template (de-CH falls back to de, then the template's default).",
    )
    format: Literal["html", "text"] = Field(
        default="html", description="`html`: text plus an HTML version from the template; `text`: text only."
    )
    bulk: bool = Field(
        default=False,
        description="Bulk mail (newsletters, digests): carries one-click List-Unsubscribe; one recipient only.",
    )
    send_at: AwareDatetime | None = Field(
        default=None,
        description="When to send it (ISO 8601 with offset); absent or past: now; at most MAX_SCHEDULE_AHEAD ahead.",
    )
    priority: Priority = Field(
        default=Priority.NORMAL, description="`high` ones due are sent before `normal` and `low` ones."
    )

    @model_validator(mode="after")
    def _subject_and_body_or_template(self) -> NotificationContent:
        if self.template is None and (self.subject is None or self.body is None):
            raise ValueError("send `subject` and `body`, or `template` (with `data` and optionally `locale`)")
        if self.template is not None and (self.subject is not None or self.body is not None):
            raise ValueError("send either `template` (with `data`) or `subject` and `body`, not both")
        if self.template is None and (self.data or self.locale):
            raise ValueError("`data` and `locale` go with `template`")
        return self


class NotificationRequest(NotificationContent):
    """The body of `POST /notifications`: the content and its attachments (stored beside it)."""

    attachments: list[AttachmentIn] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS,
        description="Files to attach; their decoded total is bounded by MAIL_MAX_ATTACHMENT_BYTES.",
    )

    def content(self) -> NotificationContent:
        """The content without the attachments, as stored in the notification's record."""
        return NotificationContent.model_construct(
            self.model_fields_set & set(NotificationContent.model_fields),
            **{name: getattr(self, name) for name in NotificationContent.model_fields},
        )


class Notification(NotificationContent):
    """A notification accepted for delivery; `id` travels in the X-Notification-ID header."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def accept(cls, content: NotificationContent) -> Notification:
        """`content` with a new id, without validating the addresses a second time."""
        fields = {name: getattr(content, name) for name in NotificationContent.model_fields}
        return cls.model_construct(**fields)
