"""The dev inbox in a real browser: `python -m <package> dev`, real notifications, headless Chromium.

Screenshots of the inbox and of a message go to `artifacts/` at the template root.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
API_KEY = "browser-test-key-0123456789"
STARTUP_SECONDS = 30.0
BROWSER_SECONDS = 60.0
OLDER_SUBJECT, NEWER_SUBJECT = "Your March invoice", "Welcome aboard"
OLDER = {"to": ["alice@example.com"], "subject": OLDER_SUBJECT, "body": "Hi Alice,\n\nInvoice 1042 is due."}
NEWER = {"to": ["bob@example.org"], "cc": ["carol@example.com"], "subject": NEWER_SUBJECT, "body": "Hi Bob!"}


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; a missing one fails the test (`.ci/run` installs it; tests install nothing)."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is not installed: `apt-get install chromium fonts-dejavu-core` (.ci/run installs it)"
        )
    return found


def request(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST `body` as JSON with the API key) and return the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=5) as response:
        return json.load(response)


@dataclass
class DevService:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until(self, ready: Any, what: str) -> Any:
        """Poll `ready()` until it returns something truthy; fail with the service's output otherwise."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`dev` exited with {self.process.returncode} before {what}:\n{self.output()}")
            try:
                result = ready()
            except (urllib.error.URLError, ConnectionError):
                result = None
            if result:
                return result
            time.sleep(0.05)
        pytest.fail(f"no {what} within {STARTUP_SECONDS:.0f} s:\n{self.output()}")


@pytest.fixture(scope="module")
def dev_service(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevService]:
    """`python -m <package> dev` on free ports; the dev SMTP server's CA and inbox in a temporary folder."""
    folder = tmp_path_factory.mktemp("dev-inbox")
    http_port, smtp_port = free_port(), free_port()
    ours = ("MAIL_", "API_", "DEV_", "CELERY_")  # the service's settings come from this test only
    env = {name: value for name, value in os.environ.items() if not name.startswith(ours)}
    env.update(PYTHONPATH=str(default_project / "src"), PYTHONDONTWRITEBYTECODE="1", API_KEYS=API_KEY)
    package = default_project.name.replace("-", "_")
    command = [sys.executable, "-m", package, "dev", "--port", str(http_port), "--smtp-port", str(smtp_port)]
    command += ["--dir", str(folder / "smtp")]
    log = folder / "dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=default_project, env=env, stdout=output, stderr=output)
    service = DevService(f"http://127.0.0.1:{http_port}", process, log)
    try:
        service.wait_until(lambda: request(f"{service.url}/health") == {"status": "ok"}, "/health answer")
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (stdlib only, no driver to install)."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # `--remote-debugging-pipe` reads commands on fd 3 and writes replies on fd 4. The child's ends
        # are first copied above 4, so moving them to 3 and 4 can never overwrite one another.
        child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser)
        os.close(from_browser)

        def wire_pipes() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        self.process = subprocess.Popen(
            [chromium, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,  # only two dup2 calls between fork and exec
            close_fds=False,  # our other descriptors are close-on-exec anyway (PEP 446)
            start_new_session=True,
        )
        os.close(child_in)
        os.close(child_out)
        self._last_id, self._buffer = 0, b""
        self._page = self.attach(self.call("", "Target.createTarget", url="about:blank")["targetId"])
        viewport = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", **viewport)

    def attach(self, target: str) -> str:
        """A session on a page or frame target."""
        session: str = self.call("", "Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        return session

    def send(self, method: str, **params: Any) -> Any:
        """Run one DevTools command in the page."""
        return self.call(self._page, method, **params)

    def call(self, session: str, method: str, **params: Any) -> Any:
        """Run one DevTools command in `session` ('' for the browser itself) and return its result."""
        self._last_id += 1
        command = {"id": self._last_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + BROWSER_SECONDS
        while True:
            while b"\0" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
                    pytest.fail(f"chromium did not answer {method} within {BROWSER_SECONDS:.0f} s")
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    pytest.fail(f"chromium exited while running {method}")
                self._buffer += chunk
            message, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(message)
            if reply.get("id") == self._last_id:  # anything else is an event
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, what: str) -> None:
        """Wait until `expression` is truthy in the page."""
        eventually(lambda: self.evaluate(expression), what)

    def frame_dom(self, url: str) -> str:
        """The DOM, as JSON, of the frame showing `url` ('' while there is none).

        Sandboxed frames run out of process, so they are targets of their own; reading their DOM
        needs no script in them (they may run none).
        """
        targets = self.call("", "Target.getTargets")["targetInfos"]
        for target in targets:
            if target["type"] == "iframe" and target["url"] == url:
                return json.dumps(self.call(self.attach(target["targetId"]), "DOM.getDocument", depth=-1))
        return ""

    def screenshot(self, path: Path) -> None:
        """Save the 1280x900 viewport as a PNG."""
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        """Close the browser; if it hangs, kill its session (the browser and its helpers, nothing else)."""
        with contextlib.suppress(OSError):
            os.write(self._commands, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


def eventually(check: Callable[[], Any], what: str, seconds: float = 10.0) -> None:
    """Poll `check()` until it is truthy: the page updates itself, there is no event to await."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"the page did not show {what} within {seconds:.0f} s")
        time.sleep(0.05)


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    """A fresh headless Chromium, closed after the test."""
    started = Browser(chromium, tmp_path / "profile")
    try:
        yield started
    finally:
        started.close()


def text_of(selector: str) -> str:
    """JavaScript for the text of the element matching `selector` ('' when there is none)."""
    return f"(document.querySelector({json.dumps(selector)})?.textContent ?? '')"


def shows(selector: str, text: str) -> str:
    """JavaScript: does the element matching `selector` show `text`?"""
    return f"{text_of(selector)}.includes({json.dumps(text)})"


def test_inbox_refreshes_itself_and_shows_a_message(browser: Browser, dev_service: DevService) -> None:
    inbox = f"{dev_service.url}/dev/inbox"
    request(f"{dev_service.url}/notifications", OLDER)
    dev_service.wait_until(lambda: request(f"{inbox}/messages")["total"] == 1, "the first message stored")

    browser.send("Page.navigate", url=inbox)
    browser.wait_for(shows("#messages", OLDER_SUBJECT), "the first subject")

    newer_id = request(f"{dev_service.url}/notifications", NEWER)["id"]  # while the page is open
    browser.wait_for(shows("#messages", NEWER_SUBJECT), "the new mail without a reload")
    listed = browser.evaluate(text_of("#messages"))
    assert listed.index(NEWER_SUBJECT) < listed.index(OLDER_SUBJECT)  # newest first
    assert "bob@example.org" in listed
    assert browser.evaluate(text_of("#count")) == "2"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "dev-inbox.png")

    rows = request(f"{inbox}/messages")["messages"]
    [newer] = [row["id"] for row in rows if row["notification_id"] == newer_id]
    browser.evaluate(f"document.querySelector('#messages a[data-id={json.dumps(newer)}]').click()")
    browser.wait_for(shows("#text", "Hi Bob!"), "the text part of the clicked message")
    assert browser.evaluate(text_of("#subject")) == NEWER_SUBJECT
    assert browser.evaluate(text_of("#cc")) == "carol@example.com"
    assert browser.evaluate(text_of("#notification")) == newer_id
    assert browser.evaluate(shows("#headers", f"X-Notification-ID{newer_id}"))
    frame, html_url = "document.getElementById('html')", f"{inbox}/messages/{newer}/html"
    assert browser.evaluate(f"{frame}.getAttribute('sandbox')") == ""  # sandboxed, scripts not allowed
    assert browser.evaluate(f"{frame}.src") == html_url
    eventually(lambda: "Hi Bob!" in browser.frame_dom(html_url), "the HTML part in its sandboxed frame")
    browser.screenshot(ARTIFACTS / "dev-inbox-message.png")
