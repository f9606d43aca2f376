"""The rendered project passes its own suite, mypy --strict, and, from a fresh virtualenv, every make target."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import DELIVERIES, answers_id, render, run_project_tests

SUITES = [{"delivery": delivery} for delivery in DELIVERIES]
"""The answers whose whole suite runs (in the fresh virtualenv test of a full run)."""
OTHER_NAME = {"delivery": "celery", "package_name": "notify_svc"}
"""A package name other than the default: no module or test may hard-code the default's."""
ANSWERS = [*SUITES, OTHER_NAME]


@pytest.mark.parametrize("answers", SUITES, ids=answers_id)
def test_generated_suite_passes(tmp_path: Path, answers: dict[str, str]) -> None:
    result = run_project_tests(render(tmp_path, **answers))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_another_package_name_is_used_everywhere(tmp_path: Path) -> None:
    """No file names the default package, and every test module imports (a whole run would add nothing else:
    the code is the same, only the name differs)."""
    project = render(tmp_path, **OTHER_NAME)
    default = "oscis_mail_service"
    named = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and default in path.read_text(errors="ignore")
    ]
    assert named == []
    collected = run_project_tests(project, "--collect-only")
    assert collected.returncode == 0, collected.stdout[-6000:] + collected.stderr[-2000:]
    assert " tests collected" in collected.stdout


@pytest.mark.parametrize("answers", ANSWERS, ids=answers_id)
def test_generated_code_passes_mypy_strict(tmp_path: Path, answers: dict[str, str]) -> None:
    project = render(tmp_path, **answers)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "src", "tests"],
        cwd=project,
        env={**os.environ, "MYPYPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    overrides = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["mypy"].get("overrides", [])
    unchecked = [
        module
        for override in overrides
        if override.get("ignore_missing_imports")
        for module in override["module"]
    ]
    # Only libraries without type information are skipped; Celery and kombu are checked against celery-types.
    assert {module.split(".")[0] for module in unchecked} <= {"asyncpg", "authlib", "dkim", "dnslib"}


def make(project: Path, target: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["make", target], cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"make {target}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("delivery", DELIVERIES)
def test_fresh_render_passes_setup_test_lint_and_pre_commit(tmp_path: Path, delivery: str) -> None:
    """What a user runs first: `make setup`, `make test`, `make lint`, `pre-commit run --all-files`."""
    project = render(tmp_path, delivery=delivery)
    # The user's shell: no virtualenv of ours, no PYTHONPATH.
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.endswith("/.venv/bin"))
    make(project, "setup", env)
    assert (project / ".env").read_text() == (project / ".env.example").read_text()
    make(project, "test", env)
    make(project, "lint", env)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    hooks = subprocess.run(
        [str(project / ".venv/bin/pre-commit"), "run", "--all-files"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert hooks.returncode == 0, hooks.stdout[-6000:]
