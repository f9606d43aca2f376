"""Logs: text or JSON lines on stderr, each naming the request and the notification it is about.

Every process of the service (the API, workers, the CLI) calls `configure_logging`. LOG_LEVEL applies
to the service's own loggers only (this package's and its server's); libraries log warnings and
errors, whatever LOG_LEVEL says: at DEBUG, aiosqlite would log every statement with its parameters
(bodies, subjects, recipients, Idempotency-Keys). The service's own debug lines name no body. The
ids come from context variables: `api.request_id.RequestIdMiddleware` sets the request's, and the dispatcher
sets both around each delivery (`log_context`), so every line logged meanwhile names them, the
mailer's retries included.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

from pydantic import Field, field_validator

from ..mail.core.loading import EnvSettings

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
NOTIFICATION_ID: ContextVar[str | None] = ContextVar("notification_id", default=None)
IDS = (("notification_id", NOTIFICATION_ID), ("request_id", REQUEST_ID))
"""The record attribute (and JSON field) each id goes in, and where it comes from."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVER_LOGGERS = ("uvicorn", "uvicorn.access")
"""Loggers uvicorn gives handlers of their own; their lines go through ours instead."""
OWN_LOGGERS = (__name__.partition(".")[0], "uvicorn"{{ ', "celery"' if cookiecutter.delivery == "celery" else "" }})
"""Loggers at LOG_LEVEL: this package's and its server's{{ " (uvicorn, Celery's worker)" if cookiecutter.delivery == "celery" else " (uvicorn)" }}, children included."""
SERVER_CHILDREN = ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")
"""Loggers uvicorn gives a level of their own (its --log-level); they follow LOG_LEVEL instead."""
LIBRARY_LEVEL = logging.WARNING
"""The level of every other logger: the libraries'."""


class LogSettings(EnvSettings):
    """How much is logged, and how (`LOG_*` variables, and `.env`)."""

    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one readable line per event; json: one JSON object per line, for a log collector.",
    )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, level: str) -> str:
        if level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return level.upper()


@contextmanager
def log_context(notification_id: str, request_id: str | None = None) -> Iterator[None]:
    """Name `notification_id` (and `request_id`, when given) in every line logged in the block."""
    notification_token = NOTIFICATION_ID.set(notification_id)
    request_token = None if request_id is None else REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        NOTIFICATION_ID.reset(notification_token)
        if request_token is not None:
            REQUEST_ID.reset(request_token)


class ContextFilter(logging.Filter):
    """Puts the ids of the context on each record (`request_id`, `notification_id`: None when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, variable in IDS:
            if getattr(record, name, None) is None:
                setattr(record, name, variable.get())
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then `[notification=... request=...]` when known."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        known = ((name, getattr(record, name, None)) for name, _ in IDS)
        ids = [f"{name.removesuffix('_id')}={value}" for name, value in known if value]
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(ids)}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, the ids known, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        timestamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, str] = {
            "timestamp": timestamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, _ in IDS:
            value = getattr(record, name, None)
            if value:
                line[name] = str(value)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the `sys.stderr` of the moment (a test's capture may have replaced it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: LogSettings) -> None:
    """Log to stderr in LOG_FORMAT: the service's own loggers (uvicorn's included) at LOG_LEVEL, libraries'
    at WARNING; calling it again replaces the setup."""
    root = logging.getLogger()
    for previous in [handler for handler in root.handlers if isinstance(handler, StderrHandler)]:
        root.removeHandler(previous)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(LIBRARY_LEVEL)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
    for name in SERVER_CHILDREN:
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
