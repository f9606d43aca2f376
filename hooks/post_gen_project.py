"""Remove the files of options that were not chosen.

Which files belong to which option is data (`OPTION_FILES`), not `if`s spread over
the hook. The hook only deletes, so running it again (e.g. on `cruft update`) is safe.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# option -> chosen value -> paths (relative to the project, `{package}` expanded) that exist only for it
OPTION_FILES: dict[str, dict[str, list[str]]] = {
    "delivery": {
        "background": [
            "src/{package}/delivery/background.py",
            "tests/test_background_crash.py",
        ],
        "celery": [
            "src/{package}/delivery/celery_app.py",
            "src/{package}/delivery/queued.py",
            "src/{package}/worker.py",
            "tests/celery_worker.py",
            "tests/redis_server.py",
            "tests/test_shared_limits_redis.py",
            "tests/test_worker.py",
            "tests/test_worker_redis.py",
            "docs/celery.md",
        ],
    },
}


def unchosen_paths(answers: dict[str, str], option_files: dict[str, dict[str, list[str]]]) -> list[str]:
    """Paths that belong only to values the answers did not choose."""
    package = answers["package_name"]
    return [
        path.format(package=package)
        for option, files_by_value in option_files.items()
        for value, paths in files_by_value.items()
        if answers[option] != value
        for path in paths
    ]


def remove_paths(project: Path, paths: list[str]) -> None:
    """Delete each path under `project`; missing ones are fine."""
    for relative in paths:
        target = project / relative
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


# Rendered by cookiecutter; Jinja's tojson never emits a single quote.
ANSWERS_JSON = r'''{{ cookiecutter | tojson }}'''  # fmt: skip


def main() -> int:
    remove_paths(Path.cwd(), unchosen_paths(json.loads(ANSWERS_JSON), OPTION_FILES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
