"""X-Request-ID: every request gets an id, logged with each line about it and returned on every response."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability.logs import REQUEST_ID

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""An incoming X-Request-ID kept as it is: 1 to 128 letters, digits, `.`, `_`, `:` and `-` (nothing that
could forge the `[notification=... request=...]` tags of a text log line)."""


class RequestIdMiddleware:
    """ASGI middleware: each request gets an id (a sane incoming X-Request-ID, else a new one), set in
    `REQUEST_ID` while it runs and returned in X-Request-ID on every response, the 500 of an unhandled
    error included (which Starlette's outermost error middleware would send without it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started:
                await PlainTextResponse("Internal Server Error", status_code=500)(
                    scope, receive, send_with_id
                )
            raise  # for the server to log, as Starlette does
        finally:
            REQUEST_ID.reset(token)


def accepted_request_id(incoming: str | None) -> str:
    """`incoming` if it is a sane id (SANE_REQUEST_ID), else a new one (never echoing a bad one)."""
    if incoming is not None and SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex
