"""The ASGI app: `create_app()` wires settings, delivery and routes; `app` is built on first use."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import SERVICE_NAME
from .api import errors, health, metrics, notifications, status, suppressions, unsubscribe
from .api.auth import Authenticator
from .api.limits import RequestLimits
from .api.rate_limit import ApiRateLimits
from .api.request_id import RequestIdMiddleware
from .api.template_docs import document_templates
from .delivery.{{ "queued" if cookiecutter.delivery == "celery" else "background" }} import create_delivery, limits_storage
from .mail import SettingsError
from .notifications import Composer
from .notifications.template_files import TemplateFolderError
from .observability.logs import configure_logging
from .observability.metrics import HttpMetrics, instruments, process_exiting
from .ratelimit.api import ApiLimiter
from .ratelimit.storage import close_storage
from .settings import Settings, check_metrics_dir
from .store import NotificationStore, SchemaError, check_schema, open_engine

SERVICE_DESCRIPTION = {{ cookiecutter.description | tojson }}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; settings default to the environment and `.env`."""
    settings = settings or Settings.from_env()
    configure_logging(settings.logs)
    check_store(settings.store.database_url)
    check_metrics_dir(settings.metrics)
    composer = Composer.load(
        settings.messages, service_name=SERVICE_NAME, sender=str(settings.mail.from_address)
    )
    api_limit = settings.limits_in_force.api
    api_limiter = ApiLimiter(api_limit.text) if api_limit.text else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = NotificationStore(open_engine(settings.store.database_url))
        app.state.mail_probe = health.ProbeCache(settings.mail, ttl=health.MAIL_PROBE_TTL)
        storage = None
        if api_limiter is not None:
            storage = limits_storage(store)
            api_limiter.bind(storage)
        try:
            app.state.store = store
            app.state.delivery = create_delivery(settings, store, composer)
{%- if cookiecutter.delivery == "celery" %}
            app.state.readiness = health.Readiness({"store": store.ping, "broker": app.state.delivery.ping})
{%- else %}
            app.state.readiness = health.Readiness({"store": store.ping})
{%- endif %}
            await app.state.delivery.start()
            try:
                yield
            finally:
                await app.state.delivery.aclose()
        finally:
            if storage is not None:
                await close_storage(storage)
            await store.aclose()
            if settings.metrics.enabled:
                process_exiting()

    app = FastAPI(title=SERVICE_NAME, description=SERVICE_DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    # The templates, loaded once: the API checks with them, the dispatcher renders.
    app.state.composer = composer
    document_templates(app, composer.templates)  # before RequestLimits takes app.openapi
    app.state.authenticator = authenticator = Authenticator(settings.api)
    app.add_middleware(RequestLimits, settings=settings.api, authenticator=authenticator, openapi=app.openapi)
    if api_limiter is not None:
        # Outside RequestLimits: a key over its limit gets 429 before its body is read.
        counted = instruments() if settings.metrics.enabled else None
        app.add_middleware(
            ApiRateLimits, authenticator=authenticator, limiter=api_limiter, instruments=counted
        )
    if settings.metrics.enabled:
        app.add_middleware(HttpMetrics)  # outside RequestLimits: it also sees what that refuses
    app.add_middleware(RequestIdMiddleware)  # outermost: RequestLimits' answers and 500s carry the id too
    errors.install(app)
    app.include_router(health.router)
    app.include_router(notifications.router)
    app.include_router(status.router)
    app.include_router(unsubscribe.router)
    app.include_router(suppressions.router)
    if settings.metrics.enabled:
        app.include_router(metrics.router)
    if settings.api.dev_mode:
        from .api import dev_inbox, dev_templates

        app.include_router(dev_inbox.router)
        app.include_router(dev_templates.router)
    return app


def check_store(database_url: str) -> None:
    """Raise `SchemaError` unless the store is at the schema of this code (checked on a thread of its own,
    as uvicorn builds the app inside its event loop)."""
    failure: list[SchemaError] = []

    async def check() -> None:
        engine = open_engine(database_url)
        try:
            await check_schema(engine)
        except SchemaError as error:
            failure.append(error)
        finally:
            await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(check(),), name="store-check")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def __getattr__(name: str) -> FastAPI:
    """`{{ cookiecutter.package_name }}.main:app` for uvicorn; bad settings exit with one line, not a traceback."""
    if name != "app":
        raise AttributeError(name)
    try:
        application = create_app()
    except (SettingsError, SchemaError, TemplateFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    globals()["app"] = application
    return application
