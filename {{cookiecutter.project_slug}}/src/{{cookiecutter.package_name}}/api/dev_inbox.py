"""Development only: a page listing what the embedded SMTP server received (mounted when DEV_MODE is on).

The messages are the `.eml` files `devsmtp.start_dev_server` writes to `<DEV_SMTP_DIR>/inbox`.
The page polls `GET /dev/inbox/messages` with `If-None-Match`, so an unchanged inbox costs a
directory listing and a 304. An email's HTML is served with a CSP that sandboxes it and forbids
scripts, and the page shows it in an `<iframe sandbox>`. It answers only to this machine: a loopback
peer address naming a local Host (the inbox holds every captured message, password-reset links included).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ..mail.core.settings import is_loopback
from .deps import SettingsDep, StoreDep

STATIC = Path(__file__).parent / "static"
ASSETS = {"inbox.css": "text/css", "inbox.js": "text/javascript"}
MESSAGE_ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{8}")  # the names save_to_inbox gives, without `.eml`
MAX_LISTED = 200
HEADER_BYTES = 64 * 1024  # enough for the headers of any message the service sends
PAGE_CSP = "; ".join(
    ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-src 'self'"]
)
# `sandbox` without allow-scripts: even opened on its own, an email's HTML runs no script, in an opaque origin.
# No remote images or fonts either: loading them would tell the sender the email was opened.
EMAIL_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; font-src data:"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
UNREADABLE = "(unreadable message: open the raw .eml)"


async def local_only(request: Request, host: Annotated[str, Header()] = "") -> None:
    """Refuse a peer on another machine, whatever Host it sends, and a Host other than localhost,
    127.0.0.1 or [::1] (DNS rebinding from a web page)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    peer = request.client.host if request.client else ""
    if name.lower() not in LOCAL_HOSTS or not is_loopback(peer):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the dev inbox answers only to this machine, as localhost, 127.0.0.1 or [::1]",
        )


router = APIRouter(
    prefix="/dev/inbox",
    tags=["dev inbox"],
    include_in_schema=False,
    dependencies=[Depends(local_only)],
)


class MessageSummary(BaseModel):
    """One row of the inbox."""

    id: str
    received: datetime
    from_: str = Field(serialization_alias="from")
    to: str
    subject: str
    notification_id: str | None
    size: int


class Inbox(BaseModel):
    """The newest messages, newest first; `total` counts them all."""

    total: int
    messages: list[MessageSummary]


class MessageDetail(MessageSummary):
    """One message: its headers in order, its text and HTML parts (null when absent), and the
    notification's status in the store (null when it has none)."""

    notification_status: str | None
    cc: str
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None


def inbox_folder(settings: SettingsDep) -> Path:
    """Where the dev SMTP server stores messages."""
    return settings.api.dev_smtp_dir / "inbox"


InboxDep = Annotated[Path, Depends(inbox_folder)]


def message_file(message_id: str, inbox: InboxDep) -> Path:
    """The stored file of `message_id`; 404 unless the id has exactly the stored form and the file exists."""
    if MESSAGE_ID.fullmatch(message_id) and (path := inbox / f"{message_id}.eml").is_file():
        return path
    raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message in the dev inbox")


MessageFileDep = Annotated[Path, Depends(message_file)]


def stored_messages(inbox: Path) -> list[tuple[Path, int, float]]:
    """(path, size, mtime) of every stored message, newest first."""
    if not inbox.is_dir():
        return []
    found = []
    for path in inbox.glob("*.eml"):
        if MESSAGE_ID.fullmatch(path.stem):
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile (`make clean`)
                stat = path.stat()
                found.append((path, stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda entry: (entry[2], entry[0].name), reverse=True)


def parse(data: bytes, *, headers_only: bool = False) -> EmailMessage:
    """Parse a stored message with the modern email policy."""
    message: EmailMessage = BytesParser(policy=default_policy).parsebytes(data, headersonly=headers_only)
    return message


def readable(read: Callable[[], object]) -> str:
    """`read()` as text; UNREADABLE when the email package fails on a malformed header."""
    try:
        return str(read())
    except Exception:  # CPython's header parser raises assorted errors on bad input
        return UNREADABLE


def header(message: EmailMessage, name: str) -> str:
    """The text of the first `name` header, "" when absent."""
    return readable(lambda: message.get(name, ""))


def all_headers(message: EmailMessage) -> list[tuple[str, str]]:
    """Every header in order, each UNREADABLE when malformed."""
    policy = message.policy
    return [
        (name, readable(functools.partial(policy.header_fetch_parse, name, raw)))
        for name, raw in message.raw_items()
    ]


def summarize(path: Path, size: int, mtime: float, message: EmailMessage) -> MessageSummary:
    """The list row of a parsed message; malformed headers are shown as UNREADABLE."""
    notification_id = header(message, "X-Notification-ID")
    return MessageSummary(
        id=path.stem,
        received=datetime.fromtimestamp(mtime, tz=UTC),
        from_=header(message, "From"),
        to=header(message, "To"),
        subject=header(message, "Subject"),
        notification_id=notification_id or None,
        size=size,
    )


def body_text(message: EmailMessage, subtype: str) -> str | None:
    """The decoded `text/<subtype>` body, or None when the message has none."""
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        content: str = part.get_content()
    except LookupError:  # an unknown charset: show what can be shown
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    return content


@router.get("")
async def page() -> FileResponse:
    """The inbox page."""
    return FileResponse(STATIC / "inbox.html", headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/assets/{name}")
async def asset(name: str) -> FileResponse:
    """The page's stylesheet and script (a fixed list; nothing else in the folder is served)."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.get("/messages")
def list_messages(inbox: InboxDep, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The newest messages; answers 304 to `If-None-Match: <ETag>` while the inbox is unchanged."""
    stored = stored_messages(inbox)
    fingerprint = hashlib.sha256(repr([(path.name, size) for path, size, _ in stored]).encode()).hexdigest()
    etag = f'"{fingerprint[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    rows = []
    for path, size, mtime in stored[:MAX_LISTED]:
        with path.open("rb") as file:
            rows.append(summarize(path, size, mtime, parse(file.read(HEADER_BYTES), headers_only=True)))
    return Response(
        Inbox(total=len(stored), messages=rows).model_dump_json(by_alias=True),
        media_type="application/json",
        headers=headers,
    )


@router.get("/messages/{message_id}")
async def get_message(path: MessageFileDep, store: StoreDep) -> MessageDetail:
    """One message: headers (X-Notification-ID among them), text part, HTML part, notification status."""
    stat = path.stat()
    message = parse(path.read_bytes())
    summary = summarize(path, stat.st_size, stat.st_mtime, message)
    record = await store.get(summary.notification_id) if summary.notification_id else None
    return MessageDetail(
        **summary.model_dump(),
        notification_status=record.status if record else None,
        cc=header(message, "Cc"),
        headers=all_headers(message),
        text=body_text(message, "plain"),
        html=body_text(message, "html"),
    )


@router.get("/messages/{message_id}/html")
def message_html(path: MessageFileDep) -> Response:
    """The HTML part, sandboxed by its Content-Security-Policy; 404 when the message has none."""
    html = body_text(parse(path.read_bytes()), "html")
    if html is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this message has no HTML part")
    headers = {
        "Content-Security-Policy": EMAIL_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(html, media_type="text/html", headers=headers)


@router.get("/messages/{message_id}/raw")
def message_raw(path: MessageFileDep) -> FileResponse:
    """The message exactly as received, as an `.eml` download."""
    return FileResponse(path, media_type="message/rfc822", filename=path.name)
