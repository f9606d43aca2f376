"""Rendering helpers shared by the template tests."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text())
PROVIDERS: list[str] = CONTEXT["mail_provider"]
DELIVERIES: list[str] = CONTEXT["delivery"]


def render(output_dir: Path, **answers: str) -> Path:
    """Render the template with `answers` over the defaults; return the project folder."""
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(output_dir),
        extra_context=answers,
        overwrite_if_exists=True,
    )
    return Path(project)


def run_project_tests(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a rendered project's pytest suite with this interpreter (its dependencies are installed here)."""
    environment = {**os.environ, "PYTHONPATH": str(project / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (for things that offer no event to wait on) until true, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def load_module(path: Path) -> ModuleType:
    """A module of a render loaded by its path, under its own name (it must not import its package)."""
    spec = importlib.util.spec_from_file_location(f"rendered_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def check_schema(project: Path, builtin_schema: str, relative_file: str) -> None:
    """Validate a rendered file with check-jsonschema's vendored schema (works offline)."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", builtin_schema, relative_file],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The defaults, rendered once per session; tests must not modify it."""
    return render(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="session")
def celery_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """delivery=celery, rendered once per session; tests must not modify it."""
    return render(tmp_path_factory.mktemp("celery"), delivery="celery")


@pytest.fixture(params=DELIVERIES)
def delivery(request: pytest.FixtureRequest) -> str:
    """Each delivery option in turn; `project` is its render."""
    chosen: str = request.param
    return chosen


@pytest.fixture
def project(delivery: str, request: pytest.FixtureRequest) -> Path:
    """The session render of `delivery` (read-only)."""
    fixture = "default_project" if delivery == "background" else "celery_project"
    return Path(request.getfixturevalue(fixture))


def answers_id(answers: dict[str, Any]) -> str:
    """A readable test id for a set of answers."""
    return ",".join(f"{key}={value}" for key, value in answers.items()) or "defaults"


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each generated suite once: where the fresh-virtualenv test of a delivery is selected (its
    `make test` and `make lint` run that render's suite and mypy), deselect the shared-venv runs of the same answers."""
    functions = [item for item in items if isinstance(item, pytest.Function) and hasattr(item, "callspec")]
    fresh = "test_fresh_render_passes_setup_test_lint_and_pre_commit"
    covered = [
        {"delivery": item.callspec.params["delivery"]} for item in functions if item.originalname == fresh
    ]
    shared = {"test_generated_suite_passes", "test_generated_code_passes_mypy_strict"}
    duplicates = [
        item
        for item in functions
        if item.originalname in shared and item.callspec.params.get("answers") in covered
    ]
    if duplicates:
        config.hook.pytest_deselected(items=duplicates)
        items[:] = [item for item in items if item not in duplicates]
