"""Pre-commit hook: render every email template in every locale with its example.json.

What `make templates-check` runs, without the project's virtualenv: the hook's environment holds the
service's dependencies and the code is read from src/.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from {{ cookiecutter.package_name }}.cli import main

raise SystemExit(main(["templates", "check"]))
