"""The dev inbox: mounted only with DEV_MODE on; shows what the embedded SMTP server really received."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.dev_inbox import message_file
from {{ cookiecutter.package_name }}.cli import main as cli_main
from {{ cookiecutter.package_name }}.devsmtp import (
    DEV_PASSWORD,
    DEV_USERNAME,
    Received,
    free_port,
    start_dev_server,
    summary,
)
from {{ cookiecutter.package_name }}.mail import Mailer, MailSettings
from {{ cookiecutter.package_name }}.notifications import Composer, Notification
from {{ cookiecutter.package_name }}.notifications.settings import MessageSettings

from .conftest import API_KEY, auth, service

NOTIFICATION = {"to": ["alice@example.com"], "subject": "Your report", "body": "Hello <b>Alice</b>"}
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - what `dev` is asked to listen on, in these tests


@pytest.fixture
def dev_smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The embedded dev SMTP server (STARTTLS, login dev/dev); MAIL_* points at it. Yields its folder."""
    folder = tmp_path / "dev-smtp"
    controller = start_dev_server(folder, port=0)
    env = {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(controller.port),
        "MAIL_USERNAME": DEV_USERNAME,
        "MAIL_PASSWORD": DEV_PASSWORD,
        "MAIL_FROM": "noreply@example.com",
        "MAIL_FROM_NAME": "Dev Sender",
        "MAIL_STARTTLS": "true",
        "MAIL_SSL_TLS": "false",
        "MAIL_CERT_BUNDLE": str(folder / "ca.pem"),
        "MAIL_TIMEOUT": "5",
        "DEV_SMTP_DIR": str(folder),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield folder
    finally:
        controller.stop()


def deliver(**change: object) -> str:
    """Send the service's email for a notification through the dev SMTP server, as every delivery does."""
    notification = Notification.model_validate({**NOTIFICATION, **change})

    async def send() -> None:
        async with Mailer(MailSettings()) as mailer:
            composer = Composer.load(
                MessageSettings(), service_name="Test Service", sender="noreply@example.com"
            )
            await mailer.send(composer.compose(notification).message)

    asyncio.run(send())  # the server stored the message before it answered
    return notification.id


def stored_ids(folder: Path) -> list[str]:
    return sorted(path.stem for path in (folder / "inbox").glob("*.eml"))


@pytest.fixture
def inbox(dev_smtp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The service with DEV_MODE on, reading the dev SMTP server's inbox."""
    with service(monkeypatch, DEV_MODE="true") as client:
        yield client


def routes(message_id: str) -> list[str]:
    return [
        "/dev/inbox",
        "/dev/inbox/assets/inbox.js",
        "/dev/inbox/messages",
        f"/dev/inbox/messages/{message_id}",
        f"/dev/inbox/messages/{message_id}/html",
        f"/dev/inbox/messages/{message_id}/raw",
    ]


@pytest.mark.parametrize("setting", [{}, {"DEV_MODE": "false"}], ids=["unset", "false"])
def test_without_dev_mode_no_inbox_route_exists(
    dev_smtp: Path, monkeypatch: pytest.MonkeyPatch, setting: dict[str, str]
) -> None:
    deliver()
    [message_id] = stored_ids(dev_smtp)  # a real message that DEV_MODE=true would show

    with service(monkeypatch, **setting) as client:
        assert [client.get(route).status_code for route in routes(message_id)] == [404] * 6
    with service(monkeypatch, DEV_MODE="true") as client:
        assert [client.get(route).status_code for route in routes(message_id)] == [200] * 6


def test_list_is_newest_first_and_answers_304_while_unchanged(inbox: TestClient, dev_smtp: Path) -> None:
    empty = inbox.get("/dev/inbox/messages")
    assert empty.json() == {"total": 0, "messages": []}

    first = deliver(to=["alice@example.com", "bob@example.org"])
    listed = inbox.get("/dev/inbox/messages", headers={"If-None-Match": empty.headers["ETag"]})
    assert listed.status_code == 200
    [row] = listed.json()["messages"]
    assert row["id"] == stored_ids(dev_smtp)[0]
    assert row["from"] == "Dev Sender <noreply@example.com>"
    assert row["to"] == "alice@example.com, bob@example.org"
    assert row["subject"] == "Your report"
    assert row["notification_id"] == first
    assert row["size"] == (dev_smtp / "inbox" / f"{row['id']}.eml").stat().st_size
    assert row["received"].endswith(("Z", "+00:00"))  # UTC

    unchanged = inbox.get("/dev/inbox/messages", headers={"If-None-Match": listed.headers["ETag"]})
    assert unchanged.status_code == 304
    assert unchanged.content == b""

    second = deliver(subject="Second")
    changed = inbox.get("/dev/inbox/messages", headers={"If-None-Match": listed.headers["ETag"]})
    assert changed.status_code == 200
    assert changed.json()["total"] == 2
    assert [row["notification_id"] for row in changed.json()["messages"]] == [second, first]


def test_message_shows_headers_text_and_html(inbox: TestClient, dev_smtp: Path) -> None:
    notification_id = deliver(cc=["carol@example.com"])
    [message_id] = stored_ids(dev_smtp)

    message = inbox.get(f"/dev/inbox/messages/{message_id}").json()

    assert message["subject"] == "Your report"
    assert message["cc"] == "carol@example.com"
    assert ["X-Notification-ID", notification_id] in message["headers"]
    assert message["notification_status"] is None  # sent outside the service: not in its store
    assert ["Subject", "Your report"] in message["headers"]
    assert "Hello <b>Alice</b>" in message["text"]
    assert "Hello &lt;b&gt;Alice&lt;/b&gt;" in message["html"]


def test_message_shows_its_notification_status_from_the_store(inbox: TestClient, dev_smtp: Path) -> None:
    notification_id = inbox.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
    deadline = time.monotonic() + 15
    while inbox.get(f"/notifications/{notification_id}", headers=auth()).json()["status"] != "sent":
        assert time.monotonic() < deadline, "the notification was never sent"
        time.sleep(0.02)
    [message_id] = stored_ids(dev_smtp)

    message = inbox.get(f"/dev/inbox/messages/{message_id}").json()

    assert message["notification_id"] == notification_id
    assert message["notification_status"] == "sent"


def test_html_part_is_served_sandboxed_without_scripts(inbox: TestClient, dev_smtp: Path) -> None:
    deliver()
    [message_id] = stored_ids(dev_smtp)

    response = inbox.get(f"/dev/inbox/messages/{message_id}/html")

    assert response.headers["content-type"].startswith("text/html")
    assert "Hello &lt;b&gt;Alice&lt;/b&gt;" in response.text
    policy = [directive.strip() for directive in response.headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy  # no allow-scripts token after it
    assert "default-src 'none'" in policy
    assert not any(directive.startswith("script-src") for directive in policy)
    assert "img-src 'self' data:" in policy  # no remote images: they would report the email as opened
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_frames_the_html_part_in_a_sandbox_and_loads_only_its_own_assets(inbox: TestClient) -> None:
    page = inbox.get("/dev/inbox")

    assert page.status_code == 200
    [iframe] = re.findall(r"<iframe[^>]*>", page.text)
    assert re.search(r"\ssandbox[\s>]", iframe)
    assert "allow-scripts" not in page.text
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', page.text))  # nothing from a CDN
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert inbox.get("/dev/inbox/assets/inbox.css").headers["content-type"].startswith("text/css")
    assert inbox.get("/dev/inbox/assets/inbox.js").headers["content-type"].startswith("text/javascript")
    assert inbox.get("/dev/inbox/assets/inbox.html").status_code == 404


def test_raw_download_is_the_stored_message_byte_for_byte(inbox: TestClient, dev_smtp: Path) -> None:
    deliver()
    [message_id] = stored_ids(dev_smtp)

    response = inbox.get(f"/dev/inbox/messages/{message_id}/raw")

    assert response.content == (dev_smtp / "inbox" / f"{message_id}.eml").read_bytes()
    assert response.headers["content-type"] == "message/rfc822"
    assert response.headers["content-disposition"] == f'attachment; filename="{message_id}.eml"'


def test_text_only_message_has_no_html_part(inbox: TestClient, dev_smtp: Path) -> None:
    deliver(format="text")
    [message_id] = stored_ids(dev_smtp)

    message = inbox.get(f"/dev/inbox/messages/{message_id}").json()

    assert message["html"] is None
    assert message["text"].strip() == NOTIFICATION["body"]
    assert inbox.get(f"/dev/inbox/messages/{message_id}/html").status_code == 404


TRAVERSALS = [
    "../outside",
    "..%2Foutside",
    "..%2F..%2Fdev-smtp%2Foutside",
    "%2e%2e%2foutside",
    "20240101T000000-0123abcd%2F..%2F..%2Foutside",
    "20240101T000000-0123ABCD",
    "20240101T000000-0123abcd.eml",
    "20240101T000000-0123abcd%00",
    "notes",
]


@pytest.mark.parametrize("message_id", TRAVERSALS)
def test_ids_other_than_stored_names_are_rejected(inbox: TestClient, dev_smtp: Path, message_id: str) -> None:
    deliver()
    secret = (dev_smtp / "ca.key").read_text()
    (dev_smtp / "outside.eml").write_text(secret)  # beside the inbox, not in it
    # In the inbox, but not named the way the server names messages:
    for stray in ("20240101T000000-0123ABCD.eml", "20240101T000000-0123abcd.eml.eml", "notes.eml"):
        (dev_smtp / "inbox" / stray).write_text(secret)

    for suffix in ("", "/html", "/raw"):
        response = inbox.get(f"/dev/inbox/messages/{message_id}{suffix}")
        assert response.status_code == 404
        assert "PRIVATE KEY" not in response.text
    assert inbox.get("/dev/inbox/messages").json()["total"] == 1
    with pytest.raises(HTTPException) as rejected:  # the check itself, whatever the router made of the URL
        message_file(unquote(message_id), dev_smtp / "inbox")
    assert rejected.value.status_code == 404


@pytest.mark.parametrize(
    "malformed",
    [b'To: "\r\n\r\nbody', b"From: =?utf-8?b?\xff\xfe?=\r\n\r\nbody", b"From: a@[\r\n\r\nbody"],
    ids=["open-quote", "bad-encoded-word", "open-bracket"],
)
def test_a_malformed_message_is_marked_and_the_rest_still_listed(
    inbox: TestClient, dev_smtp: Path, malformed: bytes
) -> None:
    deliver()
    (dev_smtp / "inbox" / "20000101T000000-0badc0de.eml").write_bytes(malformed)

    response = inbox.get("/dev/inbox/messages")

    assert response.status_code == 200
    [bad, good] = response.json()["messages"]
    assert good["subject"] == "Your report"
    assert "unreadable message" in bad["from"] + bad["to"]
    assert inbox.get("/dev/inbox/messages/20000101T000000-0badc0de").status_code == 200


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"])
def test_local_host_names_are_served(inbox: TestClient, host: str) -> None:
    assert inbox.get("/dev/inbox/messages", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", ""]
)
def test_other_host_names_are_refused_against_dns_rebinding(inbox: TestClient, host: str) -> None:
    for route in ["/dev/inbox", "/dev/inbox/messages"]:
        response = inbox.get(route, headers={"Host": host})
        assert response.status_code == 403
        assert "localhost" in response.json()["detail"]


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_are_served(inbox: TestClient, peer: str) -> None:
    local = TestClient(inbox.app, base_url="http://localhost", client=(peer, 50000))
    assert local.get("/dev/inbox/messages").status_code == 200


@pytest.mark.parametrize("peer", ["192.0.2.7", "10.0.0.5", "2001:db8::7", "::ffff:192.0.2.7", "testclient"])
def test_other_peers_are_refused_whatever_host_they_name(
    inbox: TestClient, dev_smtp: Path, peer: str
) -> None:
    deliver()
    [message_id] = stored_ids(dev_smtp)
    remote = TestClient(inbox.app, base_url="http://localhost", client=(peer, 50000))
    for route in routes(message_id):
        for host in ("localhost", "127.0.0.1:8000"):
            assert remote.get(route, headers={"Host": host}).status_code == 403


@pytest.mark.parametrize("host", [EVERY_INTERFACE, "::", "192.0.2.7", "dev.example.com"])
def test_dev_refuses_an_address_other_machines_reach_without_allow_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    folder = tmp_path / "dev-smtp"

    assert cli_main(["dev", "--host", host, "--dir", str(folder)]) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --host {host} ")
    assert "--allow-remote" in line
    assert not folder.exists()  # refused before anything started


def outbound_address() -> str | None:
    """This machine's IPv4 address towards the outside (no packet is sent); None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_dev_with_allow_remote_warns_and_its_inbox_still_refuses_other_machines(tmp_path: Path) -> None:
    """`dev --host 0.0.0.0 --allow-remote`, asked through this machine's own network address: the peer is
    not loopback, as from another machine, and a `Host: localhost` header does not help."""
    address = outbound_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    port = free_port()
    log = tmp_path / "dev.log"
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "dev", "--host", EVERY_INTERFACE, "--allow-remote"]
    command += ["--port", str(port), "--smtp-port", str(free_port()), "--dir", str(tmp_path / "dev-smtp")]
    environment = {**os.environ, "API_KEYS": API_KEY, "PYTHONPATH": os.pathsep.join(sys.path)}
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                local = httpx.get(f"http://127.0.0.1:{port}/dev/inbox/messages", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        remote = httpx.get(
            f"http://{address}:{port}/dev/inbox/messages", headers={"Host": "localhost"}, timeout=5
        )
        api = httpx.get(f"http://{address}:{port}/health", timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert local.status_code == 200
    assert remote.status_code == 403
    assert api.status_code == 200  # the API itself is reachable, as asked
    warning = [line for line in log.read_text().splitlines() if line.startswith("WARNING ")]
    assert "other machines can reach this development service" in " ".join(warning)


def test_the_inbox_and_the_ca_key_are_private(usual_umask: None, dev_smtp: Path) -> None:
    """Folders 0700, messages and the CA key 0600, whatever the umask (see test_file_modes.py)."""
    deliver()
    [message] = (dev_smtp / "inbox").glob("*.eml")

    paths = (dev_smtp, dev_smtp / "inbox", message, dev_smtp / "ca.key")
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in paths}
    assert modes == {dev_smtp.name: 0o700, "inbox": 0o700, message.name: 0o600, "ca.key": 0o600}


def test_the_console_line_escapes_terminal_control_characters() -> None:
    data = b"Subject: \x1b]0;owned\x07\r\nX-Notification-ID: \x1b[2J\r\n\r\nbody"
    received = Received("\x1b[31mevil@example.com", ("\x9bbob@example.com",), data, tls=True, login="dev")

    line = summary(received)

    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in line)
    assert "\\x1b[31mevil@example.com" in line


@pytest.mark.parametrize("missing", ["trustme", "aiosmtpd"])
@pytest.mark.parametrize("command", ["dev-smtp", "dev"])
def test_dev_commands_without_the_dev_dependencies_say_what_to_install(
    tmp_path: Path, missing: str, command: str
) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "from {{ cookiecutter.package_name }}.cli import main\n"
        f"sys.exit(main([{command!r}, '--dir', {str(tmp_path)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"{missing} is not installed" in line
    assert "make setup" in line
