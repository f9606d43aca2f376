"""Liveness, readiness (the store{{ " and the broker" if cookiecutter.delivery == "celery" else "" }}) and SMTP reachability."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Generic, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..mail import MailSettings
from ..mail.doctor.diagnosis import Diagnosis, Problem
from ..mail.doctor.probe import probe
from .deps import has_api_key

MAIL_PROBE_TTL = 5.0
"""Seconds one probe result answers /health/mail, so polling it cannot hammer the SMTP server."""
READY_TTL = 1.0
"""Seconds one readiness answer is shared, so a flood of probes costs the store{{ " and the broker" if cookiecutter.delivery == "celery" else "" }} one check a second."""
READY_TIMEOUT = 2.0
"""Seconds /health/ready waits for each part before calling it failing."""

T = TypeVar("T")
logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class SharedAnswer(ABC, Generic[T]):
    """One answer of `check()` shared for `ttl` seconds, with at most one check in flight."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._answer: T | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    @abstractmethod
    async def check(self) -> T:
        """Find the answer out."""

    def ttl_of(self, answer: T) -> float:
        """Seconds `answer` is shared (`ttl` unless a subclass knows better)."""
        return self.ttl

    def _fresh(self) -> T | None:
        if self._answer is None or time.monotonic() - self._checked_at >= self.ttl_of(self._answer):
            return None
        return self._answer

    async def get(self) -> T:
        """The shared answer, checking again once it is older than its ttl."""
        answer = self._fresh()
        if answer is not None:
            return answer
        async with self._lock:
            answer = self._fresh()
            if answer is None:
                answer = self._answer = await self.check()
                self._checked_at = time.monotonic()
            return answer


class Readiness(SharedAnswer[list[str]]):
    """The parts that do not answer (none: ready), each given READY_TIMEOUT; a failure is logged by its kind only."""

    def __init__(self, parts: Mapping[str, Callable[[], Awaitable[None]]], ttl: float = READY_TTL) -> None:
        super().__init__(ttl)
        self.parts = dict(parts)

    async def check(self) -> list[str]:
        answers = await asyncio.gather(*(_answers(part, ping()) for part, ping in self.parts.items()))
        return [part for part, ok in zip(self.parts, answers, strict=True) if not ok]


async def _answers(part: str, check: Awaitable[None]) -> bool:
    """Whether `check` passes within READY_TIMEOUT; a failure is logged by its kind only (no URL)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await check
    except Exception as error:
        logger.warning("readiness: the %s does not answer (%s)", part, type(error).__name__)
        return False
    return True


async def get_readiness(request: Request) -> Readiness:
    """The app's shared readiness answer, created by its lifespan."""
    readiness: Readiness = request.app.state.readiness
    return readiness


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
async def ready(readiness: Annotated[Readiness, Depends(get_readiness)]) -> JSONResponse:
    """Readiness: can this process take and deliver notifications? No key needed, no details given; one
    answer serves every probe for READY_TTL seconds."""
    failing = await readiness.get()
    if failing:
        body = {"status": "unavailable", "failing": failing, "detail": f"not answering: {', '.join(failing)}"}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready"})


class ProbeCache(SharedAnswer[Diagnosis]):
    """Shares one probe result for `ttl` seconds, with at most one probe in flight.

    The health endpoint uses it so that polling it cannot hammer the SMTP server. A refused
    login is kept for MAIL_LOGIN_COOLDOWN seconds instead, as the Mailer pauses its logins:
    polling must not lock the account.
    """

    def __init__(self, settings: MailSettings, ttl: float = 5.0) -> None:
        super().__init__(ttl)
        self.settings = settings

    async def check(self) -> Diagnosis:
        return await probe(self.settings)

    def ttl_of(self, answer: Diagnosis) -> float:
        if answer.problem is Problem.AUTH_FAILED:
            return max(self.ttl, self.settings.login_cooldown)
        return self.ttl


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
