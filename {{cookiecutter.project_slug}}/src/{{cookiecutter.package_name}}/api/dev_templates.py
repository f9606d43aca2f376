"""Development only: `/dev/templates/<name>?locale=` previews a template with its example.json (DEV_MODE).

Sandboxed like the dev inbox's messages: the HTML is served with a CSP that forbids scripts and remote
loads (an opaque origin), and only to this machine. Inline images are shown as `data:` URLs.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from ..notifications.check import SAMPLE_SERVICE
from ..notifications.templates import Rendered, TemplateRequestError
from .deps import ComposerDep
from .dev_inbox import EMAIL_CSP, local_only

router = APIRouter(
    prefix="/dev/templates",
    tags=["dev templates"],
    include_in_schema=False,
    dependencies=[Depends(local_only)],
)
PREVIEW_HEADERS = {
    "Content-Security-Policy": EMAIL_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LocaleQuery = Annotated[
    str | None, Query(max_length=35, description="BCP 47 locale; default: the template's")
]


def rendered(name: str, locale: str | None, composer: ComposerDep) -> Rendered:
    """Template `name` rendered in `locale` with its example data; 404 naming what is wrong."""
    try:
        template = composer.templates.get(name)
        return template.render(template.source.example, locale, SAMPLE_SERVICE)
    except TemplateRequestError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.get("")
async def list_templates(composer: ComposerDep) -> dict[str, Any]:
    """Every template: its locales and variables."""
    return {
        name: {"locales": template.locales, "variables": sorted(template.variables), "bulk": template.bulk}
        for name, template in composer.templates.templates.items()
    }


@router.get("/{name}")
async def preview_html(name: str, composer: ComposerDep, locale: LocaleQuery = None) -> Response:
    """The HTML of template `name`, sandboxed; its subject in the X-Email-Subject header."""
    found = rendered(name, locale, composer)
    html = found.html
    for image in found.images:
        data = base64.b64encode(image.data).decode("ascii")
        html = html.replace(f"cid:{image.name}", f"data:{image.content_type};base64,{data}")
    headers = {
        **PREVIEW_HEADERS,
        "X-Email-Subject": found.subject.encode("ascii", "replace").decode(),
        "X-Locale": found.locale,
    }
    return Response(html, media_type="text/html", headers=headers)


@router.get("/{name}/text")
async def preview_text(name: str, composer: ComposerDep, locale: LocaleQuery = None) -> Response:
    """The subject and plain text of template `name`."""
    found = rendered(name, locale, composer)
    return Response(
        f"Subject: {found.subject}\n\n{found.text}", media_type="text/plain", headers=PREVIEW_HEADERS
    )
