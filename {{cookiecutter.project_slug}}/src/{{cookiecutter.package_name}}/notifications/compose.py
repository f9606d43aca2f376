"""From a stored notification to the email sent: template rendered, inline images, attachments, unsubscribe headers.

A `Composer` is made once per process by whoever owns it (the app, a dispatcher) from `MessageSettings`:
it holds the loaded `TemplateRegistry`, so each message only renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi_mail import MessageSchema, MessageType, MultipartSubtypeEnum
from pydantic import NameEmail

from ..mail import NOTIFICATION_ID_HEADER, Attachment
from .content import Notification
from .settings import MessageSettings
from .templates import Rendered, TemplateRegistry, TemplateRequestError
from .unsubscribe import UnsubscribeTokens

__all__ = ["GENERIC_TEMPLATE", "Composed", "Composer"]

GENERIC_TEMPLATE = "notification"
"""The template of a notification sent as `subject` + `body`."""


@dataclass(frozen=True)
class Composed:
    """An email ready for `Mailer.send`: the message and its parts (inline images, then files)."""

    message: MessageSchema
    parts: tuple[Attachment, ...]


def bare(addresses: Sequence[str]) -> list[NameEmail]:
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


class Composer:
    """Renders notifications with `templates` and builds their emails from `sender` of `service_name`."""

    def __init__(
        self, templates: TemplateRegistry, settings: MessageSettings, *, service_name: str, sender: str
    ) -> None:
        self.templates = templates
        self.settings = settings
        self._service_name = service_name
        self._sender = sender
        self._tokens = (
            UnsubscribeTokens(settings.unsubscribe_secret, settings.unsubscribe_ttl)
            if settings.unsubscribe_enabled
            else None
        )

    @classmethod
    def load(cls, settings: MessageSettings, *, service_name: str, sender: str) -> Composer:
        """A composer with the templates of MAIL_TEMPLATES_DIR, loaded now."""
        return cls(
            TemplateRegistry(settings.templates_folder), settings, service_name=service_name, sender=sender
        )

    @property
    def tokens(self) -> UnsubscribeTokens | None:
        """The unsubscribe token signer; None unless MAIL_UNSUBSCRIBE_URL is set."""
        return self._tokens

    def is_bulk(self, notification: Notification) -> bool:
        """Whether `notification` (or its template) is bulk mail, which carries List-Unsubscribe."""
        name = notification.template or GENERIC_TEMPLATE
        template = self.templates.templates.get(name)
        return bool(notification.bulk or (template is not None and template.bulk))

    def render(self, notification: Notification, unsubscribe_url: str | None = None) -> Rendered:
        """The rendered template of `notification` linking to `unsubscribe_url`; raises
        `TemplateRequestError`."""
        if notification.template is None:
            name, data, locale = (
                GENERIC_TEMPLATE,
                {"subject": notification.subject, "body": notification.body},
                None,
            )
        else:
            name, data, locale = notification.template, notification.data, notification.locale
        service = {
            "service_name": self._service_name,
            "notification_id": notification.id,
            "notification_ref": display_id(notification.id),  # what the layouts print (see `display_id`)
            "unsubscribe_url": unsubscribe_url,
        }
        return self.templates.render(name, data, locale, service)

    def check(self, notification: Notification) -> None:
        """Raise `TemplateRequestError` unless `notification` can be composed: its template renders with its data,
        and bulk mail has one recipient and an unsubscribe address to link to."""
        if self.is_bulk(notification):
            if self._tokens is None:
                raise TemplateRequestError(
                    "bulk",
                    "bulk mail needs List-Unsubscribe: set MAIL_UNSUBSCRIBE_URL and MAIL_UNSUBSCRIBE_SECRET",
                )
            if len(notification.to) != 1 or notification.cc:
                raise TemplateRequestError(
                    "to", "bulk mail goes to one recipient (in `to`, no `cc`): unsubscribing is per address"
                )
        if notification.template is not None or notification.format == "html":
            self.render(notification, self._unsubscribe_url(notification))

    def _unsubscribe_url(self, notification: Notification) -> str | None:
        if self._tokens is None or not self.is_bulk(notification) or len(notification.to) != 1:
            return None
        token = self._tokens.issue(str(notification.to[0]), notification.id)
        return f"{self.settings.unsubscribe_url.rstrip('/')}/unsubscribe/{token}"

    def headers(self, notification: Notification, unsubscribe_url: str | None) -> dict[str, str]:
        """Message-ID, X-Notification-ID and, for bulk mail, List-Unsubscribe (RFC 2369) with one-click POST (RFC 8058)."""
        # fastapi-mail takes a lowercase "message-id" as the Message-ID (and makes none of its own).
        headers = {
            "message-id": message_id(notification.id, self._sender),
            NOTIFICATION_ID_HEADER: notification.id,
        }
        if unsubscribe_url:
            links = [f"<{unsubscribe_url}>"]
            if self.settings.unsubscribe_mailto:
                links.append(f"<mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe>")
            headers["List-Unsubscribe"] = ", ".join(links)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return headers

    def compose(self, notification: Notification, files: Sequence[Attachment] = ()) -> Composed:
        """The email of `notification` with `files` attached: text (and HTML with its inline images, unless
        `format` is text); raises `TemplateRequestError` when its template no longer renders."""
        to, cc = bare(notification.to), bare(notification.cc)
        reply_to = bare([notification.reply_to] if notification.reply_to else [])
        unsubscribe_url = self._unsubscribe_url(notification)
        headers = self.headers(notification, unsubscribe_url)
        common: dict[str, Any] = {"recipients": to, "cc": cc, "reply_to": reply_to, "headers": headers}
        if notification.format == "text" and notification.template is None:
            message = MessageSchema(
                subject=notification.subject, body=notification.body, subtype=MessageType.plain, **common
            )
            return Composed(message, tuple(files))
        rendered = self.render(notification, unsubscribe_url)
        subject = rendered.subject if notification.template else notification.subject  # a posted one as it is
        if notification.format == "text":
            message = MessageSchema(subject=subject, body=rendered.text, subtype=MessageType.plain, **common)
            return Composed(message, tuple(files))
        message = MessageSchema(
            subject=subject,
            body=rendered.text,
            alternative_body=rendered.html,
            subtype=MessageType.plain,
            multipart_subtype=MultipartSubtypeEnum.alternative,
            **common,
        )
        images = tuple(
            Attachment(image.name, image.content_type, image.data, image.name) for image in rendered.images
        )
        return Composed(message, images + tuple(files))
