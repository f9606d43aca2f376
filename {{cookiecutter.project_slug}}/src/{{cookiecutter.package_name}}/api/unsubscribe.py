"""One-click unsubscribe (RFC 8058): `POST /unsubscribe/{token}` puts the address on the suppression list.

No API key: the token, signed with MAIL_UNSUBSCRIBE_SECRET and expiring, is the authority. `GET` only
shows a page with a button that POSTs (link scanners and previews fetch links: a GET changes nothing).
A forged or expired token changes nothing and says so.
"""

from __future__ import annotations

import html
import logging

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse

from .. import SERVICE_NAME
from ..notifications.unsubscribe import InvalidTokenError, UnsubscribeToken
from ..store import Reason
from .deps import ComposerDep, StoreDep

logger = logging.getLogger(__name__)
router = APIRouter(tags=["unsubscribe"])
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def page(title: str, message: str, *, form: bool = False, code: int = status.HTTP_200_OK) -> HTMLResponse:
    """A plain page: a heading, a sentence (both escaped) and, with `form`, the unsubscribe button."""
    button = '<form method="post"><button type="submit">Unsubscribe</button></form>' if form else ""
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{button}</body></html>"
    )
    return HTMLResponse(body, status_code=code, headers=PAGE_HEADERS)


def verified(token: str, composer: ComposerDep) -> UnsubscribeToken | HTMLResponse:
    """What `token` says, or the page that says why it is refused."""
    if composer.tokens is None:
        return page("Unsubscribe", "Unsubscribe links are not enabled here.", code=status.HTTP_404_NOT_FOUND)
    try:
        return composer.tokens.verify(token)
    except InvalidTokenError as error:
        return page("Unsubscribe", f"Nothing was changed: {error}.", code=status.HTTP_400_BAD_REQUEST)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def confirm_page(token: str, composer: ComposerDep) -> HTMLResponse:
    """A page asking to confirm; nothing changes until its button is pressed (a POST)."""
    found = verified(token, composer)
    if isinstance(found, HTMLResponse):
        return found
    return page(
        "Unsubscribe",
        f"Stop emails from {SERVICE_NAME} to {found.address}? Press the button to confirm.",
        form=True,
    )


ONE_CLICK_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": {"List-Unsubscribe": {"const": "One-Click"}}}
            }
        },
    }
}
"""What mail providers POST (RFC 8058), declared so the request limits let the small form body in; it is not read."""


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, openapi_extra=ONE_CLICK_BODY)
async def unsubscribe(token: str, composer: ComposerDep, store: StoreDep) -> HTMLResponse:
    """Put the token's address on the suppression list (reason `unsubscribe`); repeating it changes nothing more."""
    found = verified(token, composer)
    if isinstance(found, HTMLResponse):
        return found
    added = await store.suppressions.add_suppression(
        found.address, Reason.UNSUBSCRIBE, {"notification_id": found.notification_id, "via": "one-click"}
    )
    if added:
        logger.info("unsubscribed a recipient of notification %s", found.notification_id)
    return page("Unsubscribed", f"{found.address} will get no more emails from {SERVICE_NAME}.")
