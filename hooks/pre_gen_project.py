"""Validate the answers before anything is written.

Each check is a small function returning an error message or None, so the
template tests can import and call them directly. The hook prints one line per
bad answer, each naming the variable, and exits 1; cookiecutter then removes
the output folder.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Import names of the generated project's dependencies (and theirs): a package named like one
# would shadow it, and the project would import itself.
DEPENDENCY_MODULES = frozenset(
    {
        "aiosmtpd", "aiosmtplib", "aiosqlite", "alembic", "amqp", "anyio", "asyncpg", "billiard",
        "celery", "click", "cryptography", "dns", "email_validator", "fastapi", "fastapi_mail",
        "h11", "httptools", "httpx", "jinja2", "kombu", "markupsafe", "mypy", "pydantic",
        "pydantic_core", "pydantic_settings", "pytest", "redis", "ruff", "sqlalchemy", "starlette",
        "trustme", "uvicorn", "uvloop", "vine", "watchfiles", "websockets", "yaml",
    }
)  # fmt: skip


def check_slug(slug: str) -> str | None:
    if SLUG_PATTERN.match(slug):
        return None
    return (
        f"project_slug {slug!r} is not valid: use lowercase letters, digits and single "
        "hyphens, starting with a letter (e.g. 'billing-mailer')"
    )


def check_package_name(name: str) -> str | None:
    if not PACKAGE_PATTERN.match(name):
        return (
            f"package_name {name!r} is not a valid Python package name: use lowercase "
            "letters, digits and underscores, not starting with a digit (e.g. 'billing_mailer')"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"package_name {name!r} is a Python keyword: choose another name (e.g. '{name}_service')"
    if name in sys.stdlib_module_names:
        return f"package_name {name!r} shadows the standard library module: choose another name"
    if name in DEPENDENCY_MODULES:
        return f"package_name {name!r} shadows a dependency of the project: choose another name (e.g. '{name}_service')"
    return None


def check_email(variable: str, value: str) -> str | None:
    if EMAIL_PATTERN.match(value) and ".." not in value:
        return None
    return f"{variable} {value!r} is not a valid email address: use the form name@example.com"


def check_text(variable: str, value: str) -> str | None:
    if not value.strip():
        return f"{variable} is empty: give it a value"
    if any(char in value for char in '"\\') or any(ord(char) < 32 for char in value):
        return f"{variable} {value!r} contains a double quote, backslash or control character: remove it"
    return None


def check_region(region: str) -> str | None:
    if REGION_PATTERN.match(region):
        return None
    return f"ses_region {region!r} is not an AWS region name: use a form like 'us-east-1' or 'eu-west-1'"


def check_answers(answers: dict[str, str]) -> list[str]:
    """Every problem with the answers, one message each."""
    checks = [
        check_slug(answers["project_slug"]),
        check_package_name(answers["package_name"]),
        check_email("author_email", answers["author_email"]),
        *(check_text(name, answers[name]) for name in ("project_name", "description", "author_name")),
        check_region(answers["ses_region"]) if answers["mail_provider"] == "ses" else None,
    ]
    return [message for message in checks if message]


# Rendered by cookiecutter; Jinja's tojson never emits a single quote, so the raw
# string cannot be cut short by any answer.
ANSWERS_JSON = r'''{{ cookiecutter | tojson }}'''  # fmt: skip


def main() -> int:
    problems = check_answers(json.loads(ANSWERS_JSON))
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
