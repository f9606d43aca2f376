"""`POST /webhooks/{provider}`: a provider's events, verified by its own scheme, handed to the app.

The app provides `app.state.webhooks` (a `feedback.webhooks.Webhooks`) and `app.state.webhook_events`
(an `EventSink`, awaited with the events of each verified request; it may raise to have the provider
send them again). No API key: each provider proves itself by its signature or credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..feedback.events import DeliveryEvent
from ..feedback.metrics import feedback_metrics
from ..feedback.webhooks import (
    PayloadError,
    SignatureError,
    UnknownProviderError,
    VerificationUnavailableError,
    WebhookError,
    WebhookRequest,
    Webhooks,
)

EventSink = Callable[[Sequence[DeliveryEvent]], Awaitable[None]]
"""What the app does with verified events (match, store, suppress); its errors answer 500."""

STATUS: dict[type[WebhookError], int] = {
    UnknownProviderError: 404,
    SignatureError: 401,
    PayloadError: 400,
    VerificationUnavailableError: 503,
}
RETRY_AFTER = "60"

logger = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/{provider}",
    # The body is read raw (signatures cover its exact bytes); declared, so RequestLimits lets it in.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The provider's own event format (JSON; SNS sends it as text/plain).",
            "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {}}},
        }
    },
    responses={
        200: {"description": "Verified: `events` is how many delivery events it carried."},
        400: {"description": "Verified, but not in the provider's format."},
        401: {
            "description": "Bad or missing signature or credentials, or a timestamp outside the replay window."
        },
        404: {"description": "No webhook for that provider."},
        503: {"description": "The signature cannot be checked now (SNS certificate); the provider retries."},
    },
)
async def receive(provider: str, request: Request) -> JSONResponse:
    """Verify the request as the provider's, hand its events to the app, answer at once."""
    webhooks: Webhooks = request.app.state.webhooks
    sink: EventSink = request.app.state.webhook_events
    try:
        received = await webhooks.receive(provider, WebhookRequest(await request.body(), request.headers))
        if received.subscribe_url:
            await webhooks.confirm_subscription(received.subscribe_url)
            logger.info("webhooks: confirmed the SNS subscription")
    except WebhookError as error:
        settings = getattr(request.app.state, "settings", None)  # the service's; a bare app counts nothing
        if isinstance(error, SignatureError) and settings is not None and settings.metrics.enabled:
            feedback_metrics().signature_failures.labels(provider).inc()
        return refused(error)
    await sink(received.events)
    return JSONResponse({"events": len(received.events)})


def refused(error: WebhookError) -> JSONResponse:
    """The answer to a request that is not taken; its reason is logged (it never holds a secret)."""
    status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
    logger.warning("webhooks: refused (%d): %s", status, error)
    headers = {}
    if isinstance(error, SignatureError) and error.challenge:
        headers["WWW-Authenticate"] = error.challenge
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)
