"""The template's own hooks, tests and scripts pass mypy --strict (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import TEMPLATE


def test_template_code_passes_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
