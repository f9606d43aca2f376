"""Request limits enforced before FastAPI reads a body, from the head of the request alone.

FastAPI reads and parses a body before any dependency runs, so an anonymous, unwanted or oversized
body would be held in memory first. This pure-ASGI middleware answers, before reading anything:

- on a path under an authenticated prefix (the first segment of every route that depends on
  `authenticated_client`, derived from the app's OpenAPI schema: /notifications, /metrics...),
  429 with Retry-After while the caller's address is throttled, 401 without a client's key; the
  client found is left in the request's state;
- 413 to a request that announces a body for a route that takes none (its OpenAPI operation has no
  request body), or for no route at all;
- 413 over MAX_REQUEST_BYTES (from Content-Length, or while a chunked body streams in), 408 when the
  body is not received within API_BODY_TIMEOUT, and 503 with Retry-After while the bodies held by
  all requests together would exceed MAX_REQUEST_BYTES_IN_FLIGHT;

then it hands the app the body it has read.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import ApiSettings
from .auth import THROTTLED_MESSAGE, Authenticator, ThrottledError
from .deps import CLIENT_STATE, INVALID_KEY_MESSAGE, bearer_scheme

OPERATIONS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
IN_FLIGHT_RETRY_AFTER = "1"
"""Seconds a request refused for MAX_REQUEST_BYTES_IN_FLIGHT is told to wait."""


class RefusedError(Exception):
    """A request answered by the middleware: status, detail and extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class Routes:
    """What the middleware knows of the app's routes, read from its OpenAPI schema: the authenticated
    prefixes (the first path segment of every operation secured by `bearer_scheme`, which only
    `authenticated_client` uses), and the operations that take a request body.

    A route left out of the schema counts as taking no body, and its key is not checked here; if it
    depends on `authenticated_client`, that answers 401 (it finds no client in the request's state).
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        authenticated: set[str] = set()
        self.bodies: list[tuple[re.Pattern[str], set[str]]] = []
        for path, item in schema.get("paths", {}).items():
            operations = {method.upper(): item[method] for method in OPERATIONS & item.keys()}
            with_body = {method for method, operation in operations.items() if "requestBody" in operation}
            if with_body:
                self.bodies.append((compile_path(path)[0], with_body))
            if any(secured(operation) for operation in operations.values()):
                authenticated.add(first_segment(path))
        self.authenticated = tuple(sorted(authenticated))

    def need_key(self, path: str) -> bool:
        """Whether `path` is under an authenticated prefix (any path there, routed or not)."""
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.authenticated)

    def take_body(self, scope: Scope) -> bool:
        """Whether an operation for the path and method of `scope` takes a request body."""
        return any(
            scope["method"] in methods and pattern.match(scope["path"]) for pattern, methods in self.bodies
        )


def secured(operation: dict[str, Any]) -> bool:
    """Whether an OpenAPI operation requires the API key."""
    return any(bearer_scheme.scheme_name in requirement for requirement in operation.get("security", []))


def first_segment(path: str) -> str:
    """The first segment of `path` ("/notifications" of "/notifications/{id}"); a parameter there is refused."""
    first = "/" + path.strip("/").split("/")[0]
    if "{" in first:
        raise ValueError(f"authenticated route {path}: its first path segment must be fixed")
    return first


class ByteBudget:
    """The request-body bytes held by all requests of this process at once: at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextmanager
    def hold(self) -> Iterator[Callable[[int], bool]]:
        """A `take(size)` that holds `size` more bytes if they fit (False if not); all given back at the end."""
        held = 0

        def take(size: int) -> bool:
            nonlocal held
            if self.used + size > self.limit:
                return False
            self.used += size
            held += size
            return True

        try:
            yield take
        finally:
            self.used -= held


class RequestLimits:
    """ASGI middleware: key, body and size checks before the body is read (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ApiSettings,
        authenticator: Authenticator,
        openapi: Callable[[], dict[str, Any]],
    ) -> None:
        self.app = app
        self.settings = settings
        self.authenticator = authenticator
        self.in_flight = ByteBudget(settings.max_request_bytes_in_flight)
        self._openapi = openapi
        self._routes: Routes | None = None

    @property
    def routes(self) -> Routes:
        """The app's routes, read at the first request (they are added after the middleware)."""
        if self._routes is None:
            self._routes = Routes(self._openapi())
        return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if self.routes.need_key(scope["path"]):
                self._authenticate(scope, headers)
            if not announces_body(headers):
                await self.app(scope, receive, send)
                return
            if not self.routes.take_body(scope):
                raise RefusedError(413, "this route takes no request body")
            self._check_declared_length(headers)
            with self.in_flight.hold() as take:
                messages = await self._read_body(receive, take)
                await self.app(scope, _replay(messages, receive), send)
        except RefusedError as refused:
            await _answer(send, refused.status, refused.detail, refused.headers)

    def _authenticate(self, scope: Scope, headers: Headers) -> None:
        """Leave the client of the request's key in its state, or refuse it (429 throttled, 401)."""
        address = scope["client"][0] if scope.get("client") else ""
        try:
            client = self.authenticator.authenticate(headers.get("authorization"), address)
        except ThrottledError as throttled:
            raise RefusedError(429, THROTTLED_MESSAGE, {"retry-after": str(throttled.retry_after)}) from None
        if client is None:
            raise RefusedError(401, INVALID_KEY_MESSAGE, {"www-authenticate": "Bearer"})
        scope.setdefault("state", {})[CLIENT_STATE] = client

    def _check_declared_length(self, headers: Headers) -> None:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.settings.max_request_bytes:
            raise RefusedError(413, _too_large(self.settings.max_request_bytes))

    async def _read_body(self, receive: Receive, take: Callable[[int], bool]) -> list[Message]:
        """The request's messages up to the end of its body, each body chunk held with `take`."""
        limit, timeout = self.settings.max_request_bytes, self.settings.api_body_timeout
        messages: list[Message] = []
        size = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await receive()
                    messages.append(message)
                    if message["type"] != "http.request":
                        return messages
                    chunk = len(message.get("body", b""))
                    size += chunk
                    if size > limit:
                        raise RefusedError(413, _too_large(limit))
                    if not take(chunk):
                        raise RefusedError(
                            503,
                            "the service holds too many request bodies at once (MAX_REQUEST_BYTES_IN_FLIGHT); "
                            "try again after Retry-After seconds",
                            {"retry-after": IN_FLIGHT_RETRY_AFTER},
                        )
                    if not message.get("more_body", False):
                        return messages
        except TimeoutError:
            raise RefusedError(
                408, f"request body not received within {timeout:g} s (API_BODY_TIMEOUT)"
            ) from None


def announces_body(headers: Headers) -> bool:
    """Whether the head announces a body: chunked, or a Content-Length other than 0."""
    return "transfer-encoding" in headers or headers.get("content-length", "0").lstrip("0") != ""


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives the messages already read, then waits on the real one (disconnects)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _too_large(limit: int) -> str:
    return f"request larger than {limit} bytes (MAX_REQUEST_BYTES)"


async def _answer(send: Send, status: int, detail: str, extra: dict[str, str]) -> None:
    """A JSON error like FastAPI's; the connection closes, as the rest of the body is not read."""
    body = json.dumps({"detail": detail}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close"}
    headers.update(extra)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
