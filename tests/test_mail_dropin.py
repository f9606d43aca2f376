"""The `mail` package works when copied alone into another FastAPI app.

The rendered `mail/` folder is copied, under another name, into a fresh app whose code is the
example of the README section "Adding the mail module to an existing app". That app runs in a
subprocess that can import only the copy (the service's own package is blocked) and sends through
a real SMTP server requiring STARTTLS and a login.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import trustme

PACKAGE = "oscis_mail_service"
ALLOWED_IMPORTS = {
    "fastapi_mail",
    "aiosmtplib",
    "pydantic",
    "pydantic_settings",
    "jinja2",
    "email_validator",
    "authlib",
    "httpx",
    "cryptography",
    "dkim",
    "dns",
}
SECTION = "## Adding the mail module to an existing app"
USER = "acme-mailer"
PASSWORD = secrets.token_urlsafe(18)  # fresh per run: nothing to scan, and easy to spot in output
DRIVER = f"""
import sys
sys.modules[{PACKAGE!r}] = None  # importing the service package now fails: the copy must stand alone
from fastapi.testclient import TestClient
from acme_notify.mailing.diagnosis import render_diagnosis
from acme_notify.mailing.probe import check_mail
from acme_notify.app import app

diagnosis = check_mail()
print(render_diagnosis(diagnosis))
print("check-mail exit", diagnosis.exit_code)
with TestClient(app) as client:
    response = client.post("/welcome", params={{"address": "alice@example.com"}})
print("POST /welcome", response.status_code, response.text)
"""


def mail_package(project: Path) -> Path:
    return project / "src" / PACKAGE / "mail"


def outside_imports(package: Path) -> list[str]:
    """Imports of each module of `package` that reach beyond it, stdlib and the allowed libraries."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        depth = len(path.relative_to(package).parts) - 1  # how many `..` stay inside the package
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level > depth + 1:
                    found.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
                continue
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root not in ALLOWED_IMPORTS:
                    found.append(f"{path.name}: {name}")
    return found


def test_mail_package_imports_only_stdlib_and_its_libraries(default_project: Path) -> None:
    assert outside_imports(mail_package(default_project)) == []


def test_the_import_check_catches_a_reach_outside(tmp_path: Path) -> None:
    package = tmp_path / "mail"
    package.mkdir()
    (package / "a.py").write_text("import os\nfrom ..settings import ApiSettings\nfrom . import b\n")
    (package / "b.py").write_text(f"from {PACKAGE}.main import create_app\nimport fastapi\n")
    assert outside_imports(package) == [
        "a.py: from ..settings",
        f"b.py: {PACKAGE}.main",
        "b.py: fastapi",
    ]


def readme_example(project: Path) -> str:
    """The Python example of the README's drop-in section."""
    readme = (project / "README.md").read_text()
    assert SECTION in readme
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert example is not None, "the drop-in section has no python example"
    return example.group(1)


def load_devsmtp(project: Path) -> ModuleType:
    """The rendered aiosmtpd helpers, loaded by path (they import only stdlib, aiosmtpd and trustme)."""
    name = "dropin_devsmtp"
    spec = importlib.util.spec_from_file_location(name, project / "src" / PACKAGE / "devsmtp.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_copied_mail_package_sends_from_another_app(default_project: Path, tmp_path: Path) -> None:
    app_root = tmp_path / "app"
    shutil.copytree(
        mail_package(default_project),
        app_root / "acme_notify" / "mailing",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (app_root / "acme_notify" / "__init__.py").write_text("")
    example = readme_example(default_project)
    assert "from .mail import " in example
    (app_root / "acme_notify" / "app.py").write_text(
        example.replace("from .mail import ", "from .mailing import ")
    )

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
        result = subprocess.run(
            [sys.executable, "-c", DRIVER],
            cwd=app_root,
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": str(app_root),
                "MAIL_SERVER": "127.0.0.1",
                "MAIL_PORT": str(server.port),
                "MAIL_STARTTLS": "true",
                "MAIL_USERNAME": USER,
                "MAIL_PASSWORD": PASSWORD,
                "MAIL_FROM": "noreply@acme.example",
                "MAIL_CERT_BUNDLE": str(ca_file),
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert "check-mail exit 0\n" in result.stdout, output[-4000:]
    assert "POST /welcome 200 " in result.stdout, output[-4000:]
    assert PASSWORD not in output
    (mail,) = received
    assert mail.recipients == ("alice@example.com",)
    assert mail.mail_from == "noreply@acme.example"
    assert (mail.tls, mail.login) == (True, USER)
    assert mail.message["Subject"] == "Welcome"
