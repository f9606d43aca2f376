"""The generated GitHub workflow, and lint/type checking wired into make and pre-commit.

The workflow is validated against GitHub's workflow schema (vendored in check-jsonschema, so
offline), its `${{ }}` expressions must survive rendering literally, and every step a developer
runs locally (`make setup`, `make lint`, `make test`, pre-commit) must be in it and exist.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import check_schema

WORKFLOW = Path(".github/workflows/ci.yml")


def steps(project: Path, job: str) -> list[dict[str, Any]]:
    workflow = yaml.safe_load((project / WORKFLOW).read_text())
    job_steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return job_steps


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflow_matches_the_github_schema(project: Path, schema: str) -> None:
    check_schema(project, schema, str(WORKFLOW))


def test_github_expressions_survive_rendering(project: Path) -> None:
    text = (project / WORKFLOW).read_text()
    assert "python-version: ${{ matrix.python-version }}" in text
    assert "{% raw" not in text
    assert "{%" not in text
    workflow = yaml.safe_load(text)
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]


def test_workflow_runs_what_developers_run(project: Path) -> None:
    commands = [step["run"] for step in steps(project, "test") if "run" in step]
    assert commands == [
        "make setup",
        "make lint",
        "make templates-check",
        "make test",
        ".venv/bin/pre-commit run --all-files --show-diff-on-failure",
    ]
    targets = set(re.findall(r"^([a-z-]+):", (project / "Makefile").read_text(), re.MULTILINE))
    assert {"setup", "lint", "templates-check", "test"} <= targets


def test_celery_tests_get_a_real_broker(project: Path, delivery: str) -> None:
    job = yaml.safe_load((project / WORKFLOW).read_text())["jobs"]["test"]
    (test_step,) = [step for step in job["steps"] if step.get("run") == "make test"]
    if delivery == "background":
        assert "services" not in job
        assert "env" not in test_step
        return
    redis = job["services"]["redis"]
    assert redis["image"].startswith("redis:")
    assert redis["ports"] == ["6379:6379"]
    assert "--health-cmd" in redis["options"]
    assert test_step["env"] == {"CELERY_BROKER_URL": "redis://localhost:6379/0"}


def test_cruft_check_runs_only_for_cruft_projects(project: Path) -> None:
    (check,) = [step for step in steps(project, "template") if "cruft check" in step.get("run", "")]
    assert check["if"] == "hashFiles('.cruft.json') != ''"


def test_lint_runs_ruff_and_mypy_strict_in_make_and_pre_commit(project: Path) -> None:
    makefile = (project / "Makefile").read_text()
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert lint is not None
    assert re.findall(r"(ruff check|ruff format --check|mypy) ", lint.group(1)) == [
        "ruff check",
        "ruff format --check",
        "mypy",
    ]
    tools = tomllib.loads((project / "pyproject.toml").read_text())["tool"]
    assert tools["mypy"]["strict"] is True
    assert {"E", "F", "I", "B", "UP", "S"} <= set(tools["ruff"]["lint"]["select"])
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    entries = [
        str(hook.get("entry", "")) + " " + hook["id"] for repo in config["repos"] for hook in repo["hooks"]
    ]
    assert any("ruff" in entry for entry in entries), entries
    assert any("mypy" in entry for entry in entries), entries
