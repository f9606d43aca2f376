"""Loading settings from the environment: one message naming every bad variable, never a value."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

__all__ = ["SettingsError", "SettingsT", "describe_errors", "env_name", "load_settings"]

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class SettingsError(ValueError):
    """Configuration that cannot work; the message names each bad variable, never a value."""


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` (a field name or its alias) of `model`."""
    info = model.model_fields.get(field)
    if info is None:  # pydantic reports aliased fields by their alias, already the variable's name
        return field.upper()
    alias = info.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def describe_errors(model: type[BaseSettings], error: ValidationError) -> list[str]:
    """One message per bad variable, naming it; input values are never included."""
    messages: list[str] = []
    for detail in error.errors(include_input=False, include_url=False):
        location = detail["loc"]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if not location:
            messages.append(message)
        elif detail["type"] == "missing":
            messages.append(
                f"{env_name(model, str(location[0]))} is required: set it in the environment or .env"
            )
        else:
            messages.append(f"{env_name(model, str(location[0]))}: {message}")
    return messages


def load_settings(model: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build `model` from the environment, raising `SettingsError` that names every bad variable.

    `overrides` are passed on: field values, or pydantic-settings' own such as `_env_file="../.env"`.
    """
    try:
        return model(**overrides)
    except ValidationError as error:
        raise SettingsError("invalid settings: " + "; ".join(describe_errors(model, error))) from None
