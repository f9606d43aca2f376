"""The OpenAPI schema names the installed templates: `template` lists them, each with its variables and locales."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from ..notifications.templates import TemplateRegistry

REQUEST_SCHEMA = "NotificationRequest"


def templates_schema(templates: TemplateRegistry) -> dict[str, Any]:
    """`x-templates`: per template its description, locales, variables, whether it is bulk, and example data."""
    return {
        name: {
            "description": template.source.description,
            "locales": template.locales,
            "variables": sorted(template.variables),
            "bulk": template.bulk,
            "example": template.source.example,
        }
        for name, template in templates.templates.items()
    }


def document_templates(app: FastAPI, templates: TemplateRegistry) -> None:
    """Make `app.openapi()` list the templates in the `template` field of POST /notifications."""
    original: Callable[[], dict[str, Any]] = app.openapi
    listed = templates_schema(templates)
    summary = "; ".join(
        f"`{name}` ({', '.join(each['variables']) or 'no variables'}; {', '.join(each['locales'])})"
        for name, each in listed.items()
    )

    def openapi() -> dict[str, Any]:
        schema = original()
        model = schema.get("components", {}).get("schemas", {}).get(REQUEST_SCHEMA)
        if model is not None and "x-templates" not in model["properties"]["template"]:
            field = model["properties"]["template"]
            for choice in field.get("anyOf", [field]):
                if choice.get("type") == "string":
                    choice["enum"] = sorted(listed)
            field["description"] = f"{field.get('description', '')} Installed: {summary}."
            field["x-templates"] = listed
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
