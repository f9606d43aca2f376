"""The package's import rules: no circle, `mail/` stands alone, its core needs none of its features.

Imports are read from the source (those under `if TYPE_CHECKING:` included), so the rules hold for
type checkers and readers as well as at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import {{ cookiecutter.package_name }}

PACKAGE = {{ cookiecutter.package_name }}.__name__
ROOT = Path({{ cookiecutter.package_name }}.__file__).parent
MAX_MAIL_MODULE_LINES = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py")) if "migrations" not in path.parts}


def imports_of(name: str) -> set[str]:
    """The modules of the package that module `name` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `from x import name`: the module x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_import_graph_has_no_circle() -> None:
    circles: list[list[str]] = []
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        trail.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target)
        trail.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert circles == []


def test_mail_imports_nothing_else_of_the_service() -> None:
    mail = f"{PACKAGE}.mail"
    assert {
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if within(name, mail)
        for target in targets
        if not within(target, mail)
    } == set()


def test_the_mail_core_imports_none_of_its_features() -> None:
    core = f"{PACKAGE}.mail.core"
    assert {
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if within(name, core)
        for target in targets
        if not within(target, core)
    } == set()


def test_observability_imports_no_feature() -> None:
    """Only the settings base every settings class shares (the mail core's loading, itself importing nothing)."""
    observability = f"{PACKAGE}.observability"
    shared = f"{PACKAGE}.mail.core.loading"
    assert GRAPH[shared] == set()
    assert {
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if within(name, observability)
        for target in targets
        if not within(target, observability) and target != shared
    } == set()


def test_no_module_of_mail_is_long() -> None:
    lengths = {
        name: len(MODULES[name].read_text().splitlines())
        for name in MODULES
        if within(name, f"{PACKAGE}.mail")
    }
    assert {name: lines for name, lines in lengths.items() if lines > MAX_MAIL_MODULE_LINES} == {}


def test_the_rules_see_imports() -> None:
    """The graph holds what the code imports, relative and absolute, so the rules above can fail."""
    assert f"{PACKAGE}.mail.core.errors" in GRAPH[f"{PACKAGE}.mail.core.mailer"]
    assert f"{PACKAGE}.mail" in GRAPH[f"{PACKAGE}.settings"]
    assert f"{PACKAGE}.mail.core.settings" in GRAPH[f"{PACKAGE}.mail.signin.settings"]
