"""The README's settings table and .env.example agree with the settings models.

Every settings model of the package is found by importing its modules, so a new model or field
cannot go undocumented. When the table is out of date, the failure prints the table to paste.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }}.mail.core.loading import env_name
from {{ cookiecutter.package_name }}.mail.doctor.diagnosis import Problem

PROJECT = Path(__file__).resolve().parents[1]
TABLE = re.compile(r"<!-- settings-table:start -->\n(.*)<!-- settings-table:end -->", re.DOTALL)


def settings_models() -> list[type[BaseSettings]]:
    """Every BaseSettings subclass defined in the package, in module order."""
    package = {{ cookiecutter.package_name }}
    names = sorted(
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if not info.name.endswith("__main__")
    )
    models: list[type[BaseSettings]] = []
    for name in names:
        module = importlib.import_module(name)
        models.extend(
            model
            for _, model in inspect.getmembers(module, inspect.isclass)
            if issubclass(model, BaseSettings) and model.__module__ == name
        )
    return models


def shown(value: Any) -> str:
    """A default as it would be written in .env."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ",".join(shown(item) for item in value)
    return "" if value is None else str(value)


def default_cell(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = shown(info.get_default(call_default_factory=True))
    return f"`{value}`" if value else "unset"


def settings_table() -> str:
    """The Markdown table documenting every variable, as the README must show it."""
    rows = ["| Variable | Default | Description |", "|---|---|---|"]
    for model in settings_models():
        own = vars(model).get("__annotations__", {})
        for field, info in model.model_fields.items():
            if field not in own:
                continue  # an inherited field is listed with the model that declares it
            variable = env_name(model, field)
            assert info.description, f"{model.__name__}.{field} needs a description="
            description = info.description.replace("|", "\\|")
            rows.append(f"| `{variable}` | {default_cell(info)} | {description} |")
    return "\n".join(rows) + "\n"


def documented_variables() -> set[str]:
    return {env_name(model, field) for model in settings_models() for field in model.model_fields}


def test_readme_settings_table_matches_the_models() -> None:
    found = TABLE.search((PROJECT / "README.md").read_text())
    assert found is not None, "README.md lost its settings-table markers"
    expected = settings_table()
    assert found.group(1) == expected, (
        f"update README.md between the settings-table markers to:\n\n{expected}"
    )


def test_env_example_sets_exactly_the_model_variables() -> None:
    lines = (PROJECT / ".env.example").read_text().splitlines()
    variables = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert sorted(documented_variables() - variables) == [], "missing from .env.example"
    assert sorted(variables - documented_variables()) == [], "in .env.example but read by no settings model"


def test_every_settings_model_is_found() -> None:
    names = {model.__name__ for model in settings_models()}
    assert {"MailSettings", "ApiSettings"} <= names


def test_readme_lists_every_check_mail_exit_code() -> None:
    readme = (PROJECT / "README.md").read_text()
    table = readme.split("| exit code |", 1)[1].split("\n\n", 1)[0]
    listed = {int(number) for number in re.findall(r"(?<![\w-])(\d{1,2})(?![\w-])", table)}
    assert {problem.exit_code for problem in Problem} <= listed
