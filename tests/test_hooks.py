"""The hooks: answer validation (unit and end to end) and the optional-files manifest."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import DELIVERIES, TEMPLATE, render


def load_hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


@pytest.mark.parametrize("slug", ["oscis-mail-service", "mailer", "a1-b2"])
def test_good_slugs_pass(slug: str) -> None:
    assert pre_gen.check_slug(slug) is None


@pytest.mark.parametrize("slug", ["Mail", "mail service", "-mail", "mail-", "mail--x", "1mail", "mail_x", ""])
def test_bad_slugs_are_named(slug: str) -> None:
    assert pre_gen.check_slug(slug).startswith("project_slug ")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("class", "keyword"),
        ("match", "keyword"),
        ("1mail", "not a valid"),
        ("Mail", "not a valid"),
        ("mail-service", "not a valid"),
        ("email", "standard library"),
        *(
            (name, "shadows a dependency")
            for name in ["celery", "fastapi", "pydantic", "jinja2", "aiosmtplib"]
        ),
        *((name, "shadows a dependency") for name in ["sqlalchemy", "fastapi_mail", "starlette", "uvicorn"]),
        *((name, "shadows a dependency") for name in ["kombu", "redis", "alembic", "httpx"]),
    ],
)
def test_bad_package_names_say_why(name: str, reason: str) -> None:
    message = pre_gen.check_package_name(name)
    assert message.startswith("package_name ")
    assert reason in message


@pytest.mark.parametrize("email", ["dev@example.com", "first.last+tag@mail.example.org"])
def test_good_emails_pass(email: str) -> None:
    assert pre_gen.check_email("author_email", email) is None


@pytest.mark.parametrize(
    "email", ["dev", "dev@", "@example.com", "dev@example", "a b@example.com", "a..b@example.com"]
)
def test_malformed_emails_are_named(email: str) -> None:
    assert pre_gen.check_email("author_email", email).startswith("author_email ")


@pytest.mark.parametrize("value", ['Say "hi"', "back\\slash", "line\nbreak", "  "])
def test_free_text_that_would_break_toml_or_python_is_named(value: str) -> None:
    assert pre_gen.check_text("description", value).startswith("description ")


def test_free_text_with_accents_and_apostrophes_passes() -> None:
    assert pre_gen.check_text("author_name", "Zoë O'Brien") is None


@pytest.mark.parametrize(
    ("answer", "variable"),
    [
        ({"project_slug": "Bad Slug"}, "project_slug"),
        ({"package_name": "import"}, "package_name"),
        ({"author_email": "not-an-email"}, "author_email"),
        ({"description": 'A "quoted" thing'}, "description"),
        ({"mail_provider": "ses", "ses_region": "mars"}, "ses_region"),
    ],
)
def test_bad_answers_stop_generation_with_one_line_and_no_folder(
    tmp_path: Path, answer: dict[str, str], variable: str
) -> None:
    command = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE), "-o", str(tmp_path)]
    result = subprocess.run(
        [*command, *(f"{key}={value}" for key, value in answer.items())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert errors[0].startswith(f"ERROR: {variable} ")  # a bad slug also makes a bad derived package_name
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_manifest_removes_exactly_the_other_options_files(delivery: str) -> None:
    removed = post_gen.unchosen_paths({"package_name": "pkg", "delivery": delivery}, post_gen.OPTION_FILES)
    kept = post_gen.OPTION_FILES["delivery"][delivery]
    assert removed
    assert not {path.format(package="pkg") for path in kept} & set(removed)


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_every_manifest_file_exists_when_its_option_is_chosen(tmp_path: Path, delivery: str) -> None:
    project = render(tmp_path, delivery=delivery)
    package = "oscis_mail_service"
    for path in post_gen.OPTION_FILES["delivery"][delivery]:
        assert (project / path.format(package=package)).exists(), path
    for path in post_gen.unchosen_paths(
        {"package_name": package, "delivery": delivery}, post_gen.OPTION_FILES
    ):
        assert not (project / path).exists(), path


def test_removing_twice_is_safe(tmp_path: Path) -> None:
    (tmp_path / "gone.py").write_text("")
    post_gen.remove_paths(tmp_path, ["gone.py", "never-there.py"])
    post_gen.remove_paths(tmp_path, ["gone.py"])
    assert list(tmp_path.iterdir()) == []


def test_every_bad_answer_is_named_on_its_own_line(tmp_path: Path) -> None:
    answers = {"project_slug": "Bad Slug", "package_name": "celery", "author_email": "nope"}
    command = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE), "-o", str(tmp_path)]
    result = subprocess.run(
        [*command, *(f"{key}={value}" for key, value in answers.items())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert [line.split()[1] for line in errors] == ["project_slug", "package_name", "author_email"]
    assert list(tmp_path.iterdir()) == []
