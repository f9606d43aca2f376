"""Request limits enforced before FastAPI reads a body: API key, size and receive time.

FastAPI reads and parses the body before any dependency runs, so an unauthenticated or
oversized request would be held in memory first. This pure-ASGI middleware answers 401
(protected paths, before reading anything), 413 (from Content-Length, or while a chunked
body streams in) and 408 (body not received within API_BODY_TIMEOUT), then hands the app
the body it has read.
"""

from __future__ import annotations

import asyncio
import json

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import ApiSettings
from .deps import INVALID_KEY_MESSAGE, key_matches

PROTECTED_PATHS = ("/notifications",)


class RequestLimits:
    """ASGI middleware: key check before the body on PROTECTED_PATHS, size and time limits on every body."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["path"].rstrip("/") in PROTECTED_PATHS and not self._authorized(headers):
            await _answer(send, 401, INVALID_KEY_MESSAGE, {"www-authenticate": "Bearer"})
            return
        limit = self.settings.max_request_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit))
            return
        try:
            async with asyncio.timeout(self.settings.api_body_timeout):
                messages = await _read_body(receive, limit)
        except TimeoutError:
            await _answer(
                send,
                408,
                f"request body not received within {self.settings.api_body_timeout:g} s (API_BODY_TIMEOUT)",
            )
            return
        if messages is None:
            await _answer(send, 413, _too_large(limit))
            return
        await self.app(scope, _replay(messages, receive), send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, token = get_authorization_scheme_param(headers.get("authorization"))
        return scheme.lower() == "bearer" and bool(token) and key_matches(token, self.settings.api_keys)


async def _read_body(receive: Receive, limit: int) -> list[Message] | None:
    """The request's messages up to the end of its body; None once it exceeds `limit` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives the messages already read, then waits on the real one (disconnects)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _too_large(limit: int) -> str:
    return f"request larger than {limit} bytes (MAX_REQUEST_BYTES)"


async def _answer(send: Send, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    """A JSON error like FastAPI's; the connection closes, as the rest of the body is not read."""
    body = json.dumps({"detail": detail}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close"}
    headers.update(extra or {})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
