"""The ASGI app: `create_app()` wires settings, delivery and routes; `app` is built on first use."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import SERVICE_NAME
from .api import errors, health, notifications
from .api.limits import RequestLimits
from .delivery import Delivery
{%- if cookiecutter.delivery == "celery" %}
from .delivery.queued import CeleryDelivery
from .mail import SettingsError
{%- else %}
from .delivery.background import BackgroundDelivery
from .mail import Mailer, SettingsError
{%- endif %}
from .settings import Settings

SERVICE_DESCRIPTION = {{ cookiecutter.description | tojson }}


def create_delivery(settings: Settings) -> Delivery:
    """The delivery chosen when the project was generated ({{ cookiecutter.delivery }})."""
{%- if cookiecutter.delivery == "celery" %}
    return CeleryDelivery()
{%- else %}
    return BackgroundDelivery(Mailer(settings.mail), SERVICE_NAME)
{%- endif %}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; settings default to the environment and `.env`."""
    settings = settings or Settings.from_env()
    configure_logging(settings.api.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.delivery = create_delivery(settings)
        try:
            yield
        finally:
            await app.state.delivery.aclose()

    app = FastAPI(title=SERVICE_NAME, description=SERVICE_DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(RequestLimits, settings=settings.api)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(notifications.router)
    if settings.api.dev_mode:
        from .api import dev_inbox

        app.include_router(dev_inbox.router)
    return app


def configure_logging(level: str) -> None:
    """Log to stderr with the notification ids the modules put in their messages."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("{{ cookiecutter.package_name }}").setLevel(level)


def __getattr__(name: str) -> FastAPI:
    """`{{ cookiecutter.package_name }}.main:app` for uvicorn; bad settings exit with one line, not a traceback."""
    if name != "app":
        raise AttributeError(name)
    try:
        application = create_app()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    globals()["app"] = application
    return application
