"""The `mail` package works when copied alone into another FastAPI app, as the README's drop-in section says.

The rendered `mail/` folder is copied, under another name, into a fresh app whose modules are the
two examples of the README section "Adding the mail module to an existing app" (an async app and a
sync one). The app runs in a subprocess that can import only the copy (the service's own package is
blocked) and sends through a real SMTP server requiring STARTTLS and a login. The features' packages
(authlib, dkimpy) are blocked too, so a module-level import of one fails the test; the
slow test does it all again in a fresh virtual environment holding only the README's packages.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme

from .conftest import load_module

PACKAGE = "oscis_mail_service"
SECTION = "## Adding the mail module to an existing app"
CORE_IMPORTS = {
    "fastapi_mail",
    "aiosmtplib",
    "pydantic",
    "pydantic_settings",
    "cryptography",
    "httpx",
    "idna",
}
FEATURE_IMPORTS = {  # a feature's package, and the only modules that may import it
    "authlib": {"signin/oauth.py"},
    "dkim": {"signing/dkim.py", "doctor/deliverability/records.py"},
    "dns": {"doctor/deliverability/dns.py"},
}
BLOCKED = (PACKAGE, "authlib", "dkim", "nacl")  # dnspython comes with fastapi-mail (email-validator)
USER = "acme-mailer"
PASSWORD = secrets.token_urlsafe(18)  # fresh per run: nothing to scan, and easy to spot in output
DRIVER = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # importing it now fails: the copy must stand without it
from fastapi.testclient import TestClient
from acme_notify.mailing.doctor.report import check_mail

report = check_mail()
print(report.render())
print("check-mail exit", report.exit_code)
for name in {apps!r}:
    app = __import__(f"acme_notify.{{name}}", fromlist=["app"]).app
    with TestClient(app) as client:
        response = client.post("/welcome", params={{"address": f"{{name}}@example.com"}})
    print(name, "POST /welcome", response.status_code, response.text)
"""


def mail_package(project: Path) -> Path:
    return project / "src" / PACKAGE / "mail"


def outside_imports(package: Path) -> list[str]:
    """Imports of each module of `package` that reach beyond it, beyond stdlib and its libraries, or import
    a feature's package outside that feature's modules."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        depth = len(path.relative_to(package).parts) - 1  # how many `..` stay inside the package
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level > depth + 1:
                    found.append(f"{relative}: from {'.' * node.level}{node.module or ''}")
                continue
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                allowed_in = FEATURE_IMPORTS.get(root)
                if allowed_in is not None and relative in allowed_in:
                    continue
                if root not in sys.stdlib_module_names and root not in CORE_IMPORTS:
                    found.append(f"{relative}: {name}")
    return found


def test_mail_package_imports_only_stdlib_its_libraries_and_features_where_they_run(
    default_project: Path,
) -> None:
    assert outside_imports(mail_package(default_project)) == []


def test_the_import_check_catches_a_reach_outside(tmp_path: Path) -> None:
    package = tmp_path / "mail"
    (package / "core").mkdir(parents=True)
    (package / "a.py").write_text("import os\nfrom ..settings import ApiSettings\nfrom . import b\n")
    (package / "b.py").write_text(f"from {PACKAGE}.main import create_app\nimport fastapi\n")
    (package / "core" / "c.py").write_text("from ..signin import oauth\nimport authlib\n")
    assert outside_imports(package) == [
        "a.py: from ..settings",
        f"b.py: {PACKAGE}.main",
        "b.py: fastapi",
        "core/c.py: authlib",
    ]


def readme_section(project: Path) -> str:
    readme = (project / "README.md").read_text()
    assert SECTION in readme
    return readme.split(SECTION, 1)[1].split("\n## ", 1)[0]


def readme_examples(project: Path) -> tuple[str, str]:
    """The async and the sync app of the README's drop-in section."""
    examples = re.findall(r"```python\n(.*?)```", readme_section(project), re.DOTALL)
    assert len(examples) == 2, "the drop-in section shows an async and a sync app"
    async_app, sync_app = examples
    assert "async def welcome" in async_app
    assert "def welcome" in sync_app
    assert "async def welcome" not in sync_app
    return async_app, sync_app


def readme_requirements(project: Path) -> list[str]:
    """The packages of the section's `pip install` command."""
    command = re.search(r"```console\n\s*pip install (.*?)\n", readme_section(project))
    assert command is not None, "the drop-in section has no pip install command"
    return re.findall(r'"([^"]+)"', command.group(1))


def load_devsmtp(project: Path) -> ModuleType:
    """The rendered aiosmtpd helpers (they import only stdlib, aiosmtpd and trustme)."""
    return load_module(project / "src" / PACKAGE / "devsmtp.py")


def host_app(project: Path, root: Path) -> Path:
    """A fresh app with the copied folder as `acme_notify.mailing` and the README's two apps; returns its root."""
    shutil.copytree(
        mail_package(project), root / "acme_notify" / "mailing", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "acme_notify" / "__init__.py").write_text("")
    for name, example in zip(("async_app", "sync_app"), readme_examples(project), strict=True):
        assert "from .mail import " in example
        (root / "acme_notify" / f"{name}.py").write_text(
            example.replace("from .mail import ", "from .mailing import ")
        )
    return root


@pytest.fixture
def smtp_server(default_project: Path, tmp_path: Path) -> Iterator[tuple[Any, list[Any], Path]]:
    """A STARTTLS + AUTH server of the rendered devsmtp helpers: (server, received messages, CA file)."""
    devsmtp = load_devsmtp(default_project)
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    received: list[Any] = []
    server = devsmtp.start_server(
        devsmtp.StoringHandler(received.append),
        tls="starttls",
        tls_context=devsmtp.server_tls_context(ca),
        users={USER: PASSWORD},
    )
    try:
        yield server, received, ca_file
    finally:
        server.stop()


def drive(
    python: str, app_root: Path, port: int, ca_file: Path, *, apps: bool = True, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run DRIVER in the host app with `python` and the MAIL_* variables of the README's step 3: check-mail,
    then (with `apps`) one POST to each app."""
    return subprocess.run(
        [python, "-c", DRIVER.format(blocked=BLOCKED, apps=("async_app", "sync_app") if apps else ())],
        cwd=app_root,
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(app_root),
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(port),
            "MAIL_STARTTLS": "true",
            "MAIL_USERNAME": USER,
            "MAIL_PASSWORD": PASSWORD,
            "MAIL_FROM": "noreply@acme.example",
            "MAIL_CERT_BUNDLE": str(ca_file),
            **extra,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_both_apps_sent(result: subprocess.CompletedProcess[str], received: list[Any]) -> None:
    output = result.stdout + result.stderr
    assert "check-mail exit 0\n" in result.stdout, output[-4000:]
    assert "async_app POST /welcome 200 " in result.stdout, output[-4000:]
    assert "sync_app POST /welcome 200 " in result.stdout, output[-4000:]
    assert PASSWORD not in output
    assert [mail.recipients for mail in received] == [("async_app@example.com",), ("sync_app@example.com",)]
    for mail in received:
        message = message_from_bytes(mail.data, policy=default_policy)
        assert mail.mail_from == "noreply@acme.example"
        assert (mail.tls, mail.login) == (True, USER)
        assert message["Subject"] == "Welcome"
        assert message["To"] == mail.recipients[0]  # no display name made up from the local part
        assert str(message["Message-ID"]).endswith("@acme.example>")


def test_copied_mail_package_sends_from_an_async_and_a_sync_app(
    default_project: Path, tmp_path: Path, smtp_server: tuple[Any, list[Any], Path]
) -> None:
    server, received, ca_file = smtp_server
    app_root = host_app(default_project, tmp_path / "app")
    assert_both_apps_sent(drive(sys.executable, app_root, server.port, ca_file), received)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"MAIL_AUTH": "xoauth2"},
            "MAIL_AUTH=xoauth2 needs authlib, which is not installed: pip install 'authlib",
        ),
        (
            {"MAIL_DKIM_DOMAIN": "acme.example", "MAIL_DKIM_SELECTOR": "s1", "MAIL_DKIM_PRIVATE_KEY": "x"},
            "MAIL_DKIM_DOMAIN needs dkim, which is not installed: pip install 'dkimpy",
        ),
    ],
    ids=["oauth", "dkim"],
)
def test_a_feature_without_its_package_stops_with_the_install_line(
    default_project: Path,
    tmp_path: Path,
    smtp_server: tuple[Any, list[Any], Path],
    variables: dict[str, str],
    expected: str,
) -> None:
    server, _, ca_file = smtp_server
    app_root = host_app(default_project, tmp_path / "app")
    result = drive(sys.executable, app_root, server.port, ca_file, apps=False, **variables)
    assert "check-mail exit 2\n" in result.stdout, result.stdout + result.stderr
    assert expected in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_copied_mail_package_works_in_a_fresh_virtualenv_with_only_the_readme_packages(
    default_project: Path, tmp_path: Path, smtp_server: tuple[Any, list[Any], Path]
) -> None:
    server, received, ca_file = smtp_server
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = str(environment / "bin" / "python")
    # The host app's own FastAPI, then exactly the README's command.
    install = [python, "-m", "pip", "install", "--quiet", "fastapi", *readme_requirements(default_project)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    app_root = host_app(default_project, tmp_path / "app")
    assert_both_apps_sent(drive(python, app_root, server.port, ca_file), received)
    refused = drive(python, app_root, server.port, ca_file, apps=False, MAIL_AUTH="xoauth2")
    assert "MAIL_AUTH=xoauth2 needs authlib, which is not installed: pip install 'authlib" in refused.stdout


def test_the_extras_agree_everywhere(default_project: Path) -> None:
    """mail/extras.py (what the hints say) is what the README's drop-in steps and pyproject.toml install."""
    extras = load_module(mail_package(default_project) / "extras.py")
    pyproject = tomllib.loads((default_project / "pyproject.toml").read_text())["project"]
    assert pyproject["optional-dependencies"] == {
        name: list(extra.requirements) for name, extra in extras.EXTRAS.items()
    }
    assert set(extras.CORE) <= set(pyproject["dependencies"])
    assert readme_requirements(default_project) == list(extras.CORE)
    table = (
        readme_section(default_project).split("<!-- extras:start -->", 1)[1].split("<!-- extras:end -->")[0]
    )
    for extra in extras.EXTRAS.values():
        assert "pip install " + " ".join(f"'{requirement}'" for requirement in extra.requirements) in table
