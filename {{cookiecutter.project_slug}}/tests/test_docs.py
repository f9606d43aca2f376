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
from {{ cookiecutter.package_name }}.mail.doctor.deliverability.verdict import Status, Verdict, deliverability_exit_code
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


def exit_code_table() -> str:
    """The README's table of check-mail's exit codes."""
    readme = (PROJECT / "README.md").read_text()
    return readme.split("| exit code |", 1)[1].split("\n\n", 1)[0]


def deliverability_code(status: Status) -> int:
    """The exit code of a `--deliverability` check whose worst verdict is `status`."""
    return deliverability_exit_code([Verdict("SPF", Status.OK, ""), Verdict("DMARC", status, "")])


def test_readme_exit_code_table_is_each_problem_s_code() -> None:
    """Each problem once, by the name `--json` gives it, with its code: no code missing, wrong or made up."""
    table = exit_code_table()
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)`", table, re.MULTILINE)  # | 0 | `ok`: ...
    inline = re.findall(r"`([a-z_]+)` (\d+)\b", table)  # reaching the server: `dns_failure` 10, ...
    listed = [(name, int(code)) for code, name in rows] + [(name, int(code)) for name, code in inline]
    assert sorted(listed) == sorted((problem.value, problem.exit_code) for problem in Problem)


def test_readme_deliverability_exit_codes_are_the_check_s() -> None:
    table = exit_code_table()
    record_to_fix, lookups_failed = (
        deliverability_code(Status.PROBLEM),
        deliverability_code(Status.DNS_FAILURE),
    )
    assert f"| {record_to_fix}, {lookups_failed} | `--deliverability` only" in table
    assert f"a DNS record to fix {record_to_fix}, DNS lookups failed {lookups_failed} |" in table
    readme = (PROJECT / "README.md").read_text()
    said = re.findall(r"DNS failures and timeouts are reported as such \(exit code (\d+)\)", readme)
    assert said == [str(lookups_failed)]
    assert {record_to_fix, lookups_failed}.isdisjoint(problem.exit_code for problem in Problem)
