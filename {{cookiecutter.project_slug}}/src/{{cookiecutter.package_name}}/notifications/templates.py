"""The service's email templates: HTML autoescaped, plain text not, each compiled once and cached."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi_mail import MessageSchema, MessageType, MultipartSubtypeEnum
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import NameEmail


class EmailTemplates:
    """Renders `<name>.html` and `<name>.txt` from one folder into a text + HTML message."""

    def __init__(self, folder: Path) -> None:
        loader = FileSystemLoader(folder)
        # auto_reload=False: templates are read and compiled once, not checked on disk per render.
        self._html = Environment(loader=loader, autoescape=True, undefined=StrictUndefined, auto_reload=False)
        # Plain text must not be HTML-escaped (fastapi-mail's own engine escapes it).
        self._text = Environment(
            loader=loader,
            autoescape=False,  # noqa: S701 - plain text is not HTML
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,
        )

    def render(self, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """The (text, html) bodies of template `name`."""
        text = self._text.get_template(f"{name}.txt").render(context)
        html = self._html.get_template(f"{name}.html").render(context)
        return text, html

    def message(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        recipients: list[NameEmail],
        subject: str,
        cc: list[NameEmail] | None = None,
        reply_to: list[NameEmail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> MessageSchema:
        """A multipart/alternative message: the text part first, the HTML part preferred."""
        text, html = self.render(name, context)
        return MessageSchema(
            recipients=recipients,
            cc=cc or [],
            reply_to=reply_to or [],
            subject=subject,
            body=text,
            alternative_body=html,
            subtype=MessageType.plain,
            multipart_subtype=MultipartSubtypeEnum.alternative,
            headers=dict(headers or {}),
        )
