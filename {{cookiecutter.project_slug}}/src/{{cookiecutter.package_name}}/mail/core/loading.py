"""Loading settings from the environment: one message naming every bad variable, never a value.

`EnvSettings` is how every settings class reads its variables: from the environment and from `.env`
in the working directory, the environment winning. A variable set to the empty string means its
default, wherever it is set: `MAIL_DKIM_DOMAIN=` exported (or from compose's `${VAR}` of an unset
variable) turns signing off even when `.env` sets a domain, and an empty line in `.env` is no setting.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AliasChoices, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["EnvSettings", "SettingsError", "SettingsT", "describe_errors", "env_name", "load_settings"]

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class EnvSettings(BaseSettings):
    """Settings from the environment over `.env` (another file: `_env_file="path/.env"`); an empty value means
    the default, and an empty variable in the environment hides `.env`'s value."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)
    # env_ignore_empty stays False: an empty variable must still hide .env's value (the environment wins)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """Drop empty values (from the environment, `.env` or keywords), so each field takes its default."""
        if isinstance(data, dict):
            return {name: value for name, value in data.items() if value != ""}
        return data


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
