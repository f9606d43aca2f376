"""Liveness and SMTP reachability."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the process is up."""
    return {"status": "ok"}
