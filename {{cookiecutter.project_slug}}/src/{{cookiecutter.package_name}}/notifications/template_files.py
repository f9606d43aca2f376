"""Reading one template folder: its locales' files, CSS inlined into the HTML once, its images and metadata.

A template folder holds `subject.txt`, `body.txt` and `body.html` for its default locale, a subfolder per
other locale (`de/`, `de-CH/`) with the same three files, and optionally `template.json` (`description`,
`bulk`, `locale`: the default locale, `en` unless set), `example.json` (data for `templates check` and the
preview), `style.css` (inlined into every locale's HTML) and the images the HTML shows as `cid:<file name>`.
"""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import css_inline
from babel import Locale, UnknownLocaleError

FILES = ("subject.txt", "body.txt", "body.html")
DEFAULT_LOCALE = "en"
_JINJA = re.compile(
    r"[{][{].*?[}][}]|[{]%.*?%[}]|[{]#.*?#[}]", re.DOTALL
)  # Jinja tags, written so as not to be any
_PLACEHOLDER = re.compile(r"<!--J(\d+)-->|&lt;!--J(\d+)--&gt;")
_CID = re.compile(r"""["']cid:([A-Za-z0-9._-]+)["']""")
IMAGE_TYPES = ("image/png", "image/gif", "image/jpeg", "image/webp")


class TemplateFolderError(ValueError):
    """A template folder cannot be loaded; the message names the file and what to change."""


@dataclass(frozen=True)
class InlineImage:
    """An image of a template's folder that its HTML shows as `cid:<name>`."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class TemplateSource:
    """The sources of one template: per locale (BCP 47 tag) the three files, CSS already inlined."""

    name: str
    folder: Path
    default_locale: str
    description: str
    bulk: bool
    locales: dict[str, dict[str, str]]
    example: dict[str, Any]
    images: dict[str, InlineImage] = field(default_factory=dict)


def normalized(tag: str) -> str:
    """`tag` as a BCP 47 tag with Babel's case (`de-ch` -> `de-CH`); ValueError when it is not a locale."""
    try:
        locale = Locale.parse(tag.replace("_", "-"), sep="-")
    except (ValueError, UnknownLocaleError):
        raise ValueError(f"{tag!r} is not a known locale (BCP 47, such as en, de or de-CH)") from None
    return "-".join(part for part in (locale.language, locale.script, locale.territory) if part)


def fallbacks(tag: str) -> list[str]:
    """`de-CH` -> [`de-CH`, `de`]: the tag, then each shorter prefix."""
    parts = normalized(tag).split("-")
    return ["-".join(parts[:end]) for end in range(len(parts), 0, -1)]


def inline_css(html: str, css: str) -> str:
    """`html` (a Jinja template) with `css` and its own <style> inlined into style attributes.

    Jinja tags are swapped for HTML comments while the inliner parses the page (a comment may stand
    anywhere, even between table rows, where text would be moved), then put back.
    """
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"<!--J{len(tags) - 1}-->"

    inliner = css_inline.CSSInliner(
        extra_css=css or None, keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
    )
    inlined = inliner.inline(_JINJA.sub(hide, html))
    return _PLACEHOLDER.sub(lambda match: tags[int(match.group(1) or match.group(2))], inlined)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise TemplateFolderError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise TemplateFolderError(f"{path}: must hold a JSON object")
    return value


def _read_locale(folder: Path, css: str) -> dict[str, str]:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise TemplateFolderError(
            f"{folder}: missing {', '.join(missing)} (each locale needs all of {FILES})"
        )
    files = {name: (folder / name).read_text(encoding="utf-8") for name in FILES}
    files["body.html"] = inline_css(files["body.html"], css)
    return files


def _images(folder: Path, locales: dict[str, dict[str, str]]) -> dict[str, InlineImage]:
    images: dict[str, InlineImage] = {}
    for files in locales.values():
        for name in _CID.findall(files["body.html"]):
            path = folder / name
            content_type = mimetypes.guess_type(name)[0] or ""
            if not path.is_file() or content_type not in IMAGE_TYPES:
                raise TemplateFolderError(
                    f"{folder / 'body.html'}: cid:{name} names no PNG, GIF, JPEG or WebP here"
                )
            images[name] = InlineImage(name, content_type, path.read_bytes())
    return images


def read_template(folder: Path) -> TemplateSource:
    """Load the template in `folder` (its name is the folder's); raises `TemplateFolderError`."""
    meta = _read_json(folder / "template.json")
    css = (folder / "style.css").read_text(encoding="utf-8") if (folder / "style.css").is_file() else ""
    try:
        default = normalized(str(meta.get("locale", DEFAULT_LOCALE)))
        locales = {default: _read_locale(folder, css)}
        for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
            locales[normalized(sub.name)] = _read_locale(sub, css)
    except ValueError as error:
        raise TemplateFolderError(f"{folder}: {error}") from None
    return TemplateSource(
        name=folder.name,
        folder=folder,
        default_locale=default,
        description=str(meta.get("description", "")),
        bulk=bool(meta.get("bulk", False)),
        locales=locales,
        example=_read_json(folder / "example.json"),
        images=_images(folder, locales),
    )
