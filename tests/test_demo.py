"""`make demo` works: render, serve with the dev SMTP server, send, see it arrive, stop, exit 0."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

from .conftest import TEMPLATE


def test_demo_sends_a_notification_that_arrives_over_tls() -> None:
    result = subprocess.run(
        [sys.executable, str(TEMPLATE / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "POST /notifications -> 202" in result.stdout
    assert "X-Notification-ID: " in result.stdout
    assert "tls=yes" in result.stdout
    assert "demo passed" in result.stdout


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", TEMPLATE / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_waits_for_the_server_line_written_after_the_email_file(tmp_path: Path) -> None:
    """The server writes the `.eml` file, then its console line: the demo must not read the log in between."""
    log = tmp_path / "service.log"
    log.write_text("INFO uvicorn.error: Application startup complete.\n")
    line = "[dev-smtp] from=noreply@example.com to=alice@example.com subject='Hello' id=0f3a tls=yes"

    def server_prints() -> None:
        with log.open("a") as output:
            output.write(line + "\n")

    late = threading.Timer(0.5, server_prints)
    late.start()
    try:
        assert load_demo().dev_smtp_line(log, timeout=30) == line
    finally:
        late.cancel()
        late.join()
