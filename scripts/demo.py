"""`make demo`: render the defaults, run the service with its dev SMTP server, send one notification, show it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
API_KEY = "demo-api-key-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise SystemExit(f"demo failed: {what} within {timeout:.0f} s")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            status: int = response.status
            return status == 200
    except OSError:
        return False


def dev_smtp_line(log: Path, timeout: float) -> str:
    """The dev SMTP server's line about the message, from the service log; the server prints it just after
    writing the `.eml` file, so it may not be there yet."""
    found: list[str] = []

    def logged() -> bool:
        lines = log.read_text().splitlines(keepends=True)
        found.extend(
            line.rstrip("\n") for line in lines if line.startswith("[dev-smtp]") and line.endswith("\n")
        )
        return bool(found)

    wait_until(logged, timeout, "the dev SMTP server logged no line about the message")
    return found[0]


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="oscis-demo-"))
    project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(workdir)))
    print(f"1. rendered the defaults into {project}")
    http_port, smtp_port = free_port(), free_port()
    inbox = project / ".dev-smtp" / "inbox"
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "API_KEYS": API_KEY}
    log = workdir / "service.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oscis_mail_service",
            "dev",
            "--port",
            str(http_port),
            "--smtp-port",
            str(smtp_port),
        ],
        cwd=project,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(
            lambda: healthy(f"{base}/health") or server.poll() is not None, 30, "the service did not start"
        )
        if server.poll() is not None:
            raise SystemExit(f"demo failed: the service exited:\n{log.read_text()}")
        print(f"2. started the service on {base} with the embedded STARTTLS SMTP server on port {smtp_port}")
        body = {"to": ["alice@example.com"], "subject": "Hello from the demo", "body": "It works, over TLS."}
        request = urllib.request.Request(
            f"{base}/notifications",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            accepted = json.load(response)
            print(f"3. POST /notifications -> {response.status} {accepted}")
        wait_until(lambda: inbox.exists() and any(inbox.glob("*.eml")), 15, "no email arrived")
        eml = next(inbox.glob("*.eml"))
        message = message_from_bytes(eml.read_bytes(), policy=default_policy)
        print(f"4. the email arrived: {eml.name}")
        for header in ("From", "To", "Subject", "X-Notification-ID"):
            print(f"     {header}: {message[header]}")
        text = message.get_body(preferencelist=("plain",))
        print(f"     text: {text.get_content().splitlines()[0] if text else ''}")
        if message["X-Notification-ID"] != accepted["id"]:
            raise SystemExit("demo failed: the email does not carry the notification id")
        print(f"     server: {dev_smtp_line(log, 15)}")
    finally:
        server.terminate()
        server.wait(timeout=15)
    print(f"5. stopped the service; demo passed (service log: {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
