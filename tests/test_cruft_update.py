"""A project created with cruft from an older template commit updates cleanly to a newer one.

The template is copied from the working tree into a throwaway git repository ("old" commit), then
changed ("new" commit): the README, a module, a provider preset in cookiecutter.json, and a new
celery-only file registered in the post-generation hook's manifest. A background project created
at "old", with a local edit of its own, must take every change without conflicts, keep the local
edit, still lack the celery-only files (the hooks ran again during the update), and pass
`cruft check` afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import TEMPLATE

CRUFT = [sys.executable, "-m", "cruft"]
# Hermetic git: no user or system configuration, a fixed identity.
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Template Test",
    "GIT_AUTHOR_EMAIL": "template-test@example.com",
    "GIT_COMMITTER_NAME": "Template Test",
    "GIT_COMMITTER_EMAIL": "template-test@example.com",
}
PROJECT_DIR = "{{cookiecutter.project_slug}}"
PACKAGE_DIR = f"{PROJECT_DIR}/src/{{{{cookiecutter.package_name}}}}"
MARKER = "template-update-marker-7f3a"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=120, check=False
    )


def ok(*args: str, cwd: Path) -> str:
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> str:
    ok("git", "add", "-A", cwd=repo)
    ok("git", "commit", "-q", "-m", message, cwd=repo)
    return ok("git", "rev-parse", "HEAD", cwd=repo).strip()


def template_repo(directory: Path) -> Path:
    """The template's working tree (what cookiecutter reads) as a fresh git repository."""
    repo = directory / "template"
    repo.mkdir()
    shutil.copy2(TEMPLATE / "cookiecutter.json", repo)
    ignore = shutil.ignore_patterns("__pycache__", ".*_cache", ".venv", ".dev-smtp", ".env")
    for folder in ("hooks", PROJECT_DIR):
        shutil.copytree(TEMPLATE / folder, repo / folder, ignore=ignore)
    ok("git", "init", "-q", "-b", "main", cwd=repo)
    return repo


def change_template(repo: Path) -> None:
    """The "new" template: edits in rendered files, a provider preset, a new celery-only file."""
    with (repo / PROJECT_DIR / "README.md").open("a") as readme:
        readme.write(f"\n{MARKER} in the README.\n")
    with (repo / PACKAGE_DIR / "main.py").open("a") as module:
        module.write(f"# {MARKER} in main.py\n")
    context_file = repo / "cookiecutter.json"
    context = json.loads(context_file.read_text())
    context["_providers"]["local"]["credential_hint"] += f" {MARKER} in a preset."
    context_file.write_text(json.dumps(context, indent=2) + "\n")
    (repo / PACKAGE_DIR / "delivery" / "celery_only.py").write_text('"""Only for delivery=celery."""\n')
    hook = repo / "hooks" / "post_gen_project.py"
    source = hook.read_text()
    registered = source.replace(
        '"celery": [', '"celery": [\n            "src/{package}/delivery/celery_only.py",', 1
    )
    assert registered != source, "the hook manifest no longer has a celery list"
    hook.write_text(registered)


def test_cruft_project_updates_cleanly_to_a_newer_template(tmp_path: Path) -> None:
    repo = template_repo(tmp_path)
    old = commit_all(repo, "old")
    change_template(repo)
    new = commit_all(repo, "new")

    ok(
        *CRUFT,
        "create",
        str(repo),
        "--checkout",
        old,
        "--no-input",
        "--output-dir",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    project = tmp_path / "out" / "oscis-mail-service"
    package = project / "src" / "oscis_mail_service"
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == old
    assert state["context"]["cookiecutter"]["delivery"] == "background"  # the answers are recorded
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("\n", "\nA line the team added.\n", 1))
    ok("git", "init", "-q", "-b", "main", cwd=project)
    commit_all(project, "generated at the old template, plus a local edit")
    assert run(*CRUFT, "check", cwd=project).returncode != 0  # what CI reports: the template moved on

    ok(*CRUFT, "update", "--skip-apply-ask", cwd=project)

    changed = {line[3:] for line in ok("git", "status", "--porcelain", cwd=project).splitlines()}
    assert changed == {".cruft.json", "README.md", "src/oscis_mail_service/main.py", ".env.example"}
    assert f"{MARKER} in the README." in readme.read_text()
    assert "A line the team added." in readme.read_text()
    assert f"# {MARKER} in main.py" in (package / "main.py").read_text()
    assert f"{MARKER} in a preset." in (project / ".env.example").read_text()
    assert not (package / "delivery" / "celery_only.py").exists()
    assert not (package / "worker.py").exists()
    leftovers = [path for path in project.rglob("*") if path.suffix in {".rej", ".orig"}]
    assert leftovers == []
    assert json.loads((project / ".cruft.json").read_text())["commit"] == new
    ok(*CRUFT, "check", cwd=project)
