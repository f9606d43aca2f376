"""Named email templates: loaded and compiled once (CSS inlined), rendered in a sandbox per message.

A `TemplateRegistry` is made from a folder (MAIL_TEMPLATES_DIR) and owned by whoever sends: the app
keeps one in `app.state.templates`, each dispatcher gets it (or loads its own); nothing is global,
so tests and other apps can build their own. Callers' values are only ever data: no caller string is
compiled. HTML is autoescaped, text is not; a variable the data lacks is an error, not an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .formats import FILTERS
from .template_files import FILES, InlineImage, TemplateFolderError, TemplateSource, fallbacks, read_template

__all__ = [
    "SERVICE_VARIABLES",
    "EmailTemplate",
    "InlineImage",
    "Rendered",
    "TemplateRegistry",
    "TemplateRequestError",
]

SERVICE_VARIABLES = frozenset(
    {"service_name", "notification_id", "notification_ref", "locale", "unsubscribe_url"}
)
"""What the service puts beside the caller's data (its values win)."""


class TemplateRequestError(ValueError):
    """A template cannot be rendered as asked; `field` is the request field at fault
    (`template`, `locale` or `data`), the message says what and how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rendered:
    """One rendered message: its subject (one line), text and HTML, and the images the HTML shows."""

    template: str
    locale: str
    subject: str
    text: str
    html: str
    images: tuple[InlineImage, ...]


def _environments() -> tuple[ImmutableSandboxedEnvironment, ImmutableSandboxedEnvironment]:
    html = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined, auto_reload=False)
    # Plain text must not be HTML-escaped (fastapi-mail's own template engine would escape it).
    text = ImmutableSandboxedEnvironment(
        autoescape=False,  # plain text is not HTML
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    for environment in (html, text):
        environment.filters.update(FILTERS)
    return html, text


class EmailTemplate:
    """One template: per locale its compiled subject, text and HTML; `variables` are those its files use."""

    def __init__(
        self, source: TemplateSource, html: ImmutableSandboxedEnvironment, text: ImmutableSandboxedEnvironment
    ):
        self.source = source
        self.name = source.name
        self.bulk = source.bulk
        self.compiled: dict[str, tuple[Template, Template, Template]] = {}
        used: set[str] = set()
        for locale, files in source.locales.items():
            where = source.folder if locale == source.default_locale else source.folder / locale
            try:
                trees = [(text if name.endswith(".txt") else html).parse(files[name]) for name in FILES]
                subject, body, page = (
                    (text if name.endswith(".txt") else html).from_string(tree)
                    for name, tree in zip(FILES, trees, strict=True)
                )
            except TemplateError as error:
                raise TemplateFolderError(f"{where}: {error}") from None
            used.update(*(meta.find_undeclared_variables(tree) for tree in trees))
            self.compiled[locale] = (subject, body, page)
        self.variables = frozenset(used - SERVICE_VARIABLES)

    @property
    def locales(self) -> list[str]:
        """Its locales, the default first."""
        return sorted(self.compiled, key=lambda locale: locale != self.source.default_locale)

    def locale_for(self, wanted: str | None) -> str:
        """The locale used for `wanted`: it, else its shorter prefixes (de-CH, de), else the default if
        `wanted` is None; raises `TemplateRequestError` when nothing fits."""
        if wanted is None:
            return self.source.default_locale
        try:
            candidates = fallbacks(wanted)
        except ValueError as error:
            raise TemplateRequestError("locale", str(error)) from None
        for candidate in candidates:
            if candidate in self.compiled:
                return candidate
        raise TemplateRequestError(
            "locale",
            f"template {self.name!r} has no locale {wanted!r} nor a fallback for it; it has {', '.join(self.locales)} "
            f"(add a folder {self.name}/{candidates[0]}/ or send one of those)",
        )

    def render(self, data: Mapping[str, Any], locale: str | None, service: Mapping[str, Any]) -> Rendered:
        """Render with `data` and the `service` variables; raises `TemplateRequestError` naming a missing variable."""
        chosen = self.locale_for(locale)
        subject, body, page = self.compiled[chosen]
        context = {**data, **service, "locale": chosen}
        try:
            title = " ".join(subject.render(context).split())  # one line, whatever the data holds
            text, html = body.render(context), page.render(context)
        except TemplateError as error:
            raise TemplateRequestError(
                "data",
                f"template {self.name!r} ({chosen}): {error}; send it in `data` (it uses {self.needs})",
            ) from None
        except (ValueError, TypeError, ArithmeticError) as error:  # a filter (`formats.py`) refused a value
            raise TemplateRequestError(
                "data", f"template {self.name!r} ({chosen}): a value in `data` cannot be formatted: {error}"
            ) from None
        if not title:
            raise TemplateRequestError("data", f"template {self.name!r} ({chosen}) rendered an empty subject")
        images = tuple(image for name, image in self.source.images.items() if f"cid:{name}" in html)
        return Rendered(self.name, chosen, title, text, html, images)

    @property
    def needs(self) -> str:
        """Its variables, for messages."""
        return ", ".join(sorted(self.variables)) or "no variables"


class TemplateRegistry:
    """Every template of a folder, loaded and compiled when made (raises `TemplateFolderError`)."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise TemplateFolderError(f"{folder}: no such folder (MAIL_TEMPLATES_DIR)")
        html, text = _environments()
        self.folder = folder
        self.templates = {
            path.name: EmailTemplate(read_template(path), html, text)
            for path in sorted(folder.iterdir())
            if path.is_dir() and not path.name.startswith((".", "_"))
        }

    def get(self, name: str) -> EmailTemplate:
        """The template `name`; raises `TemplateRequestError` naming those there are."""
        template = self.templates.get(name)
        if template is None:
            raise TemplateRequestError(
                "template",
                f"no template {name!r}; there are {', '.join(self.templates) or 'none'} (in {self.folder})",
            )
        return template

    def render(
        self,
        name: str,
        data: Mapping[str, Any],
        locale: str | None = None,
        service: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render template `name` (see `EmailTemplate.render`)."""
        return self.get(name).render(data, locale, service or {})
