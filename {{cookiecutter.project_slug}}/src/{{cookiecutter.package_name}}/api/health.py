"""Liveness, readiness (the store{{ " and the broker" if cookiecutter.delivery == "celery" else "" }}) and SMTP reachability."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

{% if cookiecutter.delivery == "celery" -%}
from ..delivery.queued import CeleryDelivery
{% endif -%}
from ..mail import MailSettings
from ..mail.doctor.diagnosis import Diagnosis, Problem
from ..mail.doctor.probe import probe
from .deps import StoreDep, has_api_key

MAIL_PROBE_TTL = 5.0
"""Seconds one probe result answers /health/mail, so polling it cannot hammer the SMTP server."""
READY_TIMEOUT = 2.0
"""Seconds /health/ready waits for each part before calling it failing."""

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    responses={
        200: {"description": "Ready: the store{{ " and the broker" if cookiecutter.delivery == "celery" else "" }} answer."},
        503: {"description": "Not ready: `failing` names the parts that do not answer ({{ "`store`, `broker`" if cookiecutter.delivery == "celery" else "`store`" }})."},
    },
)
{%- if cookiecutter.delivery == "celery" %}
async def ready(request: Request, store: StoreDep) -> JSONResponse:
    """Readiness: can this process take and deliver notifications? No key needed, no details given."""
    delivery: CeleryDelivery = request.app.state.delivery
    checks = {"store": store.ping(), "broker": delivery.ping()}
{%- else %}
async def ready(store: StoreDep) -> JSONResponse:
    """Readiness: can this process take and deliver notifications? No key needed, no details given."""
    checks = {"store": store.ping()}
{%- endif %}
    answers = await asyncio.gather(*(_answers(part, check) for part, check in checks.items()))
    failing = [part for part, ok in zip(checks, answers, strict=True) if not ok]
    if failing:
        body = {"status": "unavailable", "failing": failing, "detail": f"not answering: {', '.join(failing)}"}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready"})


async def _answers(part: str, check: Awaitable[None]) -> bool:
    """Whether `check` passes within READY_TIMEOUT; a failure is logged by its kind only (no URL)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await check
    except Exception as error:
        logger.warning("readiness: the %s does not answer (%s)", part, type(error).__name__)
        return False
    return True


class ProbeCache:
    """Shares one probe result for `ttl` seconds, with at most one probe in flight.

    The health endpoint uses it so that polling it cannot hammer the SMTP server. A refused
    login is kept for MAIL_LOGIN_COOLDOWN seconds instead, as the Mailer pauses its logins:
    polling must not lock the account.
    """

    def __init__(self, settings: MailSettings, ttl: float = 5.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self._result: Diagnosis | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> Diagnosis | None:
        if self._result is None:
            return None
        refused = self._result.problem is Problem.AUTH_FAILED
        ttl = max(self.ttl, self.settings.login_cooldown) if refused else self.ttl
        return self._result if time.monotonic() - self._checked_at < ttl else None

    async def get(self) -> Diagnosis:
        """The cached diagnosis, probing again once it is older than `ttl`."""
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._fresh()
            if cached is None:
                cached = self._result = await probe(self.settings)
                self._checked_at = time.monotonic()
            return cached


async def get_mail_probe(request: Request) -> ProbeCache:
    """The app's shared mail probe, created by its lifespan."""
    cache: ProbeCache = request.app.state.mail_probe
    return cache


@router.get(
    "/health/mail",
    responses={
        200: {"description": "The SMTP server accepts connect, TLS, login and MAIL_FROM (as check-mail)."},
        503: {
            "description": "It does not: `problem` names the class; `reason` says what failed, "
            "only to a request with a valid API key."
        },
    },
)
async def mail_health(
    cache: Annotated[ProbeCache, Depends(get_mail_probe)], authorized: Annotated[bool, Depends(has_api_key)]
) -> JSONResponse:
    """Connect, TLS and login to the SMTP server (never sends); the result is shared for a few seconds."""
    diagnosis = await cache.get()
    if diagnosis.ok:
        return JSONResponse({"status": "ok"})
    body = {"status": "unavailable", "problem": diagnosis.problem.value}
    if authorized:
        body["reason"] = diagnosis.message
    return JSONResponse(body, status_code=503)
