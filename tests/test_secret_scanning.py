"""Secret scanning in the generated project's git hooks: real pre-commit, real git, planted fake credentials.

One rendered repository with warmed hook environments serves the whole module: each fake credential
from `fake_secrets.planted` is added alone and `git commit` must be refused by a secret-scanning hook,
without the value showing in the output; the harmless look-alikes must commit. Planted files are not
meant to pass ruff or mypy, so those hooks are skipped there (they run in the clean-render tests).
Hook environments live in PRE_COMMIT_HOME (default ~/.cache/pre-commit): the first run installs them.
Set FAKE_SECRETS_SEED to plant other random values; failures name the seed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .conftest import DELIVERIES, PROVIDERS, TEMPLATE, render
from .fake_secrets import Plant, lookalikes, planted

pytestmark = pytest.mark.xdist_group("secret_scanning")

SEED = int(os.environ.get("FAKE_SECRETS_SEED", "20240611"))
SECRET_HOOKS = frozenset(
    {"forbid-env-files", "detect-secrets", "detect-secrets-dropped-lines", "detect-private-key"}
)
CODE_HOOKS = ("ruff-check", "ruff-format", "mypy")
PACKAGE_PLACEHOLDER = "package"


@dataclass
class Repo:
    """A git repository with the project's hooks installed."""

    path: Path
    env: dict[str, str]

    def run(
        self, *args: str, skip: tuple[str, ...] = (), check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args,
            cwd=self.path,
            env={**self.env, "SKIP": ",".join(skip)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-4000:]}"
        return result

    def pre_commit(self, *args: str, skip: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "pre_commit", *args, skip=skip)

    def head(self) -> str:
        return self.run("git", "rev-parse", "HEAD", check=True).stdout.strip()

    def write(self, plant: Plant) -> None:
        path = self.path / plant.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plant.content)
        self.run("git", "add", "--force", "--", plant.path, check=True)

    def reset(self, commit: str) -> None:
        self.run("git", "reset", "--quiet", "--hard", commit, check=True)
        self.run("git", "clean", "-fdq", check=True)


def git_environment(home: Path) -> dict[str, str]:
    """This interpreter's environment with an isolated git identity and configuration."""
    config = home / "gitconfig"
    config.write_text("[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n")
    return {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"}


def init_repo(path: Path, env: dict[str, str]) -> Repo:
    """`git init` the project, commit it (hooks bypassed) and install the hooks and their environments."""
    repo = Repo(path, env)
    repo.run("git", "init", "--quiet", check=True)
    repo.run("git", "add", "--all", check=True)
    repo.run("git", "commit", "--quiet", "--no-verify", "--message", "render", check=True)
    for args in (("install",), ("install-hooks",)):
        result = repo.pre_commit(*args)
        assert result.returncode == 0, result.stdout
    return repo


def failed_hooks(output: str) -> set[str]:
    return set(re.findall(r"^- hook id: (\S+)$", output, re.MULTILINE))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return git_environment(tmp_path_factory.mktemp("git-home"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Repo]:
    """The default render as a git repository with the hooks installed; tests restore its last commit."""
    repo = init_repo(render(tmp_path_factory.mktemp("scan")), env)
    base = repo.head()
    yield repo
    repo.reset(base)


def package(repo: Repo) -> str:
    (name,) = [child.name for child in (repo.path / "src").iterdir() if child.is_dir()]
    return name


def pre_commit_configs() -> list[Path]:
    return [
        TEMPLATE / "{{cookiecutter.project_slug}}" / ".pre-commit-config.yaml",
        TEMPLATE / ".pre-commit-config.yaml",
    ]


@pytest.mark.parametrize("config", pre_commit_configs(), ids=["generated", "template-repo"])
def test_every_hook_installs_from_the_package_index_alone(config: Path) -> None:
    """`repo: local` hooks only, in languages needing no clone, with every Python dependency pinned."""
    # Jinja's `{% if %}` lines (per-option dependencies) are not YAML: check the union of the options.
    text = "\n".join(line for line in config.read_text().splitlines() if not line.lstrip().startswith("{%"))
    assert "://" not in text, "a URL in the hook config means a clone at install time"
    hooks = [hook for repo in yaml.safe_load(text)["repos"] for hook in repo["hooks"]]
    assert {repo["repo"] for repo in yaml.safe_load(text)["repos"]} == {"local"}
    for hook in hooks:
        assert hook["language"] in {"python", "fail", "pygrep"}, hook["id"]
        if hook["language"] == "python":
            dependencies = hook["additional_dependencies"]
            assert dependencies, hook["id"]
            assert all(re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[\w.]+", dep) for dep in dependencies), (
                dependencies
            )
    ids = {hook["id"] for hook in hooks}
    assert (
        SECRET_HOOKS | {"check-added-large-files", "ruff-check", "ruff-format", "detect-secrets-baseline"}
        <= ids
    )


def test_hook_pins_match_the_project_dev_group() -> None:
    """ruff and mypy in the hooks are the versions `make lint` uses."""
    project = TEMPLATE / "{{cookiecutter.project_slug}}"
    config = (project / ".pre-commit-config.yaml").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    for tool in ("ruff", "mypy"):
        (pin,) = set(re.findall(rf'"({tool}==[\w.]+)"', pyproject))
        assert pin in config, tool


def test_every_provider_and_delivery_renders_clean(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> None:
    """The secret hooks pass on every rendered variant (placeholders in .env.example, README, ...)."""
    root = render(tmp_path_factory.mktemp("variants"))
    copied = 0
    for provider in PROVIDERS:
        for delivery in DELIVERIES:
            variant = render(
                tmp_path_factory.mktemp(f"{provider}-{delivery}"), mail_provider=provider, delivery=delivery
            )
            # Only what differs from the default render needs scanning again (.env.example, README, ...).
            for file in (path for path in variant.rglob("*") if path.is_file()):
                same = root / file.relative_to(variant)
                if not same.is_file() or same.read_bytes() != file.read_bytes():
                    target = root / "variants" / f"{provider}-{delivery}" / file.relative_to(variant)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, target)
                    copied += 1
    repo = init_repo(root, env)
    result = repo.pre_commit("run", "--all-files", skip=CODE_HOOKS)
    assert result.returncode == 0, result.stdout[-6000:]
    assert copied >= len(PROVIDERS) - 1, "the provider answers should change .env.example"


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_fresh_render_passes_every_hook(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str], delivery: str
) -> None:
    """`git init`, `git add -A`, `pre-commit run --all-files`: secrets, ruff, mypy and the rest pass."""
    project = render(tmp_path_factory.mktemp(f"fresh-{delivery}"), delivery=delivery)
    repo = Repo(project, env)
    repo.run("git", "init", "--quiet", check=True)
    repo.run("git", "add", "--all", check=True)
    result = repo.pre_commit("run", "--all-files")
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.parametrize("kind", [plant.kind for plant in planted(SEED, PACKAGE_PLACEHOLDER)])
def test_planted_credential_blocks_the_commit(repo: Repo, kind: str) -> None:
    (plant,) = [plant for plant in planted(SEED, package(repo)) if plant.kind == kind]
    base = repo.head()
    repo.write(plant)
    try:
        result = repo.run("git", "commit", "--message", f"plant {kind}", skip=CODE_HOOKS)
        output = result.stdout
        blocked_by = failed_hooks(output)
        assert result.returncode != 0, f"seed {SEED}: {kind} committed:\n{output}"
        assert repo.head() == base
        assert blocked_by, output
        assert blocked_by <= SECRET_HOOKS, f"seed {SEED}: {kind}: {blocked_by}\n{output}"
        assert plant.path in output, output
        for secret in plant.secrets:
            assert secret not in output, f"seed {SEED}: {kind}: the hook output shows the secret"
    finally:
        repo.reset(base)


@pytest.mark.parametrize(
    "path", [".env", ".env.local", "deploy/production.env", ".envrc", ".envs/.local/.mail", "app/.env"]
)
def test_real_env_files_are_refused_by_name_whatever_they_hold(repo: Repo, path: str) -> None:
    base = repo.head()
    repo.write(Plant("env file", path, "MAIL_SERVER=127.0.0.1\nMAIL_PORT=8025\n"))
    try:
        result = repo.run("git", "commit", "--message", f"add {path}", skip=CODE_HOOKS)
        assert result.returncode != 0, result.stdout
        assert failed_hooks(result.stdout) == {"forbid-env-files"}, result.stdout
        assert path in result.stdout
    finally:
        repo.reset(base)


def test_harmless_lookalikes_commit(repo: Repo) -> None:
    base = repo.head()
    plants = lookalikes(SEED, package(repo))
    for plant in plants:
        repo.write(plant)
    try:
        result = repo.run("git", "commit", "--message", "look-alikes", skip=CODE_HOOKS)
        assert result.returncode == 0, f"seed {SEED}:\n{result.stdout[-6000:]}"
        committed = repo.run("git", "show", "--name-only", "--format=", "HEAD", check=True).stdout.split()
        assert sorted(committed) == sorted({plant.path for plant in plants})
    finally:
        repo.reset(base)


def test_allowlist_pragma_lets_a_reviewed_line_through(repo: Repo) -> None:
    """`# pragma: allowlist secret` silences both scanners, and only on its own line."""
    by_kind = {plant.kind: plant for plant in planted(SEED, package(repo))}
    python = by_kind["python: annotated settings default"]
    compose = by_kind["compose: environment list password"]
    base = repo.head()
    for plant in (python, compose):
        lines = plant.content.splitlines()
        (index,) = [i for i, line in enumerate(lines) if plant.secrets[0] in line]
        lines[index] += "  # pragma: allowlist secret"
        repo.write(Plant(plant.kind, plant.path, "\n".join(lines) + "\n"))
    try:
        result = repo.run("git", "commit", "--message", "reviewed", skip=CODE_HOOKS)
        assert result.returncode == 0, result.stdout[-4000:]
        repo.write(Plant("unreviewed", python.path, (repo.path / python.path).read_text() + python.content))
        result = repo.run("git", "commit", "--message", "unreviewed", skip=CODE_HOOKS)
        assert result.returncode != 0
        assert failed_hooks(result.stdout) == {"detect-secrets"}, result.stdout
    finally:
        repo.reset(base)


def test_secrets_baseline_target_records_a_reviewed_finding(repo: Repo) -> None:
    """`make secrets-baseline` (a manual-stage hook) keeps a clean render's baseline, then records a finding
    with repo-relative rule paths, after which the commit passes."""
    base = repo.head()
    shipped = (repo.path / ".secrets.baseline").read_text()
    result = repo.pre_commit("run", "detect-secrets-baseline", "--hook-stage", "manual", "--all-files")
    assert result.returncode == 0, result.stdout
    assert (repo.path / ".secrets.baseline").read_text() == shipped, "the shipped baseline is out of date"

    plant = next(plant for plant in planted(SEED, package(repo)) if plant.kind == "env: unquoted password")
    repo.write(plant)
    try:
        repo.pre_commit("run", "detect-secrets-baseline", "--hook-stage", "manual", "--all-files")
        baseline = json.loads((repo.path / ".secrets.baseline").read_text())
        assert set(baseline["results"]) == {plant.path}
        assert plant.secrets[0] not in json.dumps(baseline)
        custom = [item["path"] for item in baseline["plugins_used"] if "path" in item]
        custom += [item["path"] for item in baseline["filters_used"] if item["path"].startswith("file:")]
        assert custom, baseline["plugins_used"]
        assert all(path.startswith("file://tools/secret_scanning/") for path in custom), custom
        repo.run("git", "add", ".secrets.baseline", check=True)
        result = repo.run("git", "commit", "--message", "reviewed in the baseline", skip=CODE_HOOKS)
        assert result.returncode == 0, result.stdout[-4000:]
    finally:
        repo.reset(base)


def test_template_repository_passes_its_own_secret_hooks(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> None:
    """The template repo's hooks scan the template folder (Jinja and all) and its tests without a finding."""
    copy = tmp_path_factory.mktemp("template") / "template"
    ignored = shutil.ignore_patterns(".git", ".venv", "artifacts", "build", "__pycache__", ".*_cache")
    shutil.copytree(TEMPLATE, copy, ignore=ignored)
    repo = Repo(copy, env)
    repo.run("git", "init", "--quiet", check=True)
    repo.run("git", "add", "--all", check=True)
    result = repo.pre_commit("run", "--all-files", skip=("ruff-check", "ruff-format"))
    assert result.returncode == 0, result.stdout[-6000:]
    assert failed_hooks(result.stdout) == set()
