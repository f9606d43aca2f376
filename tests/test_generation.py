"""Every option renders, leaves no template syntax behind, and lints clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DELIVERIES, PROVIDERS, answers_id, render

# One render per option value, the others at their defaults (the cookiecutter-django way: combinations as data).
OPTION_SETS: list[dict[str, str]] = [
    {},
    *({"delivery": delivery} for delivery in DELIVERIES[1:]),
    *({"mail_provider": provider} for provider in PROVIDERS[1:]),
    {"mail_provider": "ses", "ses_region": "eu-west-1"},
    {"project_name": "Billing Mailer", "package_name": "billing_notify"},
]
LEFTOVER = re.compile(
    r"\{\{-?\s*cookiecutter|\{%-?\s*(if|endif|for|endfor|set|raw|endraw|else)\b|cookiecutter\."
)


@pytest.fixture(scope="module", params=OPTION_SETS, ids=answers_id)
def answers(request: pytest.FixtureRequest) -> dict[str, str]:
    chosen: dict[str, str] = request.param
    return chosen


@pytest.fixture(scope="module")
def project(answers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("render"), **answers)


@pytest.fixture(scope="module")
def delivery(answers: dict[str, str]) -> str:
    """The delivery the render was asked for (the answers say it; nothing is guessed from the files)."""
    return answers.get("delivery", DELIVERIES[0])


def text_files(project: Path) -> list[Path]:
    return [path for path in project.rglob("*") if path.is_file() and b"\0" not in path.read_bytes()[:1024]]


def test_no_template_syntax_survives_rendering(project: Path) -> None:
    email_templates = {path for path in text_files(project) if "/templates/email/" in path.as_posix()}
    leftovers = [
        f"{path.relative_to(project)}:{number}: {line.strip()}"
        for path in text_files(project)
        if path not in email_templates  # the service's own Jinja email templates, copied without rendering
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if LEFTOVER.search(line)
    ]
    assert leftovers == []


def test_python_files_compile_and_pass_ruff(project: Path) -> None:
    ruff = [sys.executable, "-m", "ruff"]
    check = subprocess.run(
        [*ruff, "check", "--no-cache", "."], cwd=project, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [*ruff, "format", "--check", "--no-cache", "."],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_env_example_is_plain_dotenv_and_env_is_ignored(project: Path) -> None:
    lines = [
        line
        for line in (project / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s'\"]*( [^'\"]+)*", line) for line in lines), lines
    keys = [line.split("=", 1)[0] for line in lines]
    assert len(keys) == len(set(keys))
    assert {"MAIL_SERVER", "MAIL_PORT", "MAIL_FROM", "API_KEYS"} <= set(keys)
    ignored = (project / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    assert "!.env.example" in ignored


def test_unchosen_delivery_leaves_nothing_behind(project: Path, delivery: str) -> None:
    package = next((project / "src").iterdir())
    if delivery == "celery":
        assert (package / "worker.py").exists()
        assert "celery" in (project / "pyproject.toml").read_text()
        return
    assert not (package / "worker.py").exists()
    mentions = [
        str(path.relative_to(project))
        for path in text_files(project)
        if "celery" in path.read_text(errors="replace").lower()
    ]
    assert mentions == []
