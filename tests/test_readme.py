"""The generated README: the sections users look for, and a settings table that matches the code.

The table, `.env.example` and the settings models are compared by the generated project's own
`tests/test_docs.py`; it runs here for each delivery, since each adds its own settings.
"""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import run_project_tests

SECTIONS = [
    "Quickstart",
    "Configuration",
    "Your mail provider (local)",
    "Rotating API keys",
    "Troubleshooting",
    "Running with Docker and Mailpit",
    "Adding the mail module to an existing app",
    "Updating from the template",
]


def section(readme: str, heading: str) -> str:
    return readme.split(f" {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_settings_table_and_env_example_match_the_models(project: Path) -> None:
    result = run_project_tests(project, "tests/test_docs.py")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_readme_has_the_sections_users_look_for(project: Path) -> None:
    readme = (project / "README.md").read_text()
    headings = re.findall(r"^#{2,3} (.+)$", readme, re.MULTILINE)
    assert [heading for heading in headings if heading in SECTIONS] == SECTIONS


def test_quickstart_is_two_commands(project: Path) -> None:
    quickstart = section((project / "README.md").read_text(), "Quickstart")
    block = re.search(r"```console\n(.*?)```", quickstart, re.DOTALL)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make setup", "make dev"]


def test_troubleshooting_and_updates_name_the_commands(project: Path) -> None:
    readme = (project / "README.md").read_text()
    assert "make check-mail" in section(readme, "Troubleshooting")
    updating = section(readme, "Updating from the template")
    assert "cruft create " in updating
    assert "cruft update" in updating
    docker = section(readme, "Running with Docker and Mailpit")
    assert "docker compose up" in docker
    assert "8025" in docker
