"""Liveness and SMTP reachability."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..mail.doctor import ProbeCache

MAIL_PROBE_TTL = 5.0

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}


def get_mail_probe(request: Request) -> ProbeCache:
    """The app's shared mail probe, created on first use from its mail settings."""
    state = request.app.state
    if getattr(state, "mail_probe", None) is None:
        state.mail_probe = ProbeCache(state.settings.mail, ttl=MAIL_PROBE_TTL)
    probe: ProbeCache = state.mail_probe
    return probe


@router.get(
    "/health/mail",
    responses={
        200: {"description": "The SMTP server accepts connect, TLS and login."},
        503: {"description": "It does not: `problem` names the class, `reason` says what failed."},
    },
)
async def mail_health(probe: Annotated[ProbeCache, Depends(get_mail_probe)]) -> JSONResponse:
    """Connect, TLS and login to the SMTP server (never sends); the result is shared for a few seconds."""
    diagnosis = await probe.get()
    if diagnosis.ok:
        return JSONResponse({"status": "ok"})
    return JSONResponse(
        {"status": "unavailable", "problem": diagnosis.problem.value, "reason": diagnosis.message},
        status_code=503,
    )
