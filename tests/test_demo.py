"""`make demo` works: render, serve with the dev SMTP server, send, see it arrive, stop, exit 0."""

from __future__ import annotations

import subprocess
import sys

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
