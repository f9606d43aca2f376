"""Named templates end to end: posted with data and a locale, received by a real SMTP server, parsed as readers do."""

from __future__ import annotations

import base64
import json
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.notifications.settings import PACKAGED_TEMPLATES
from {{ cookiecutter.package_name }}.notifications.templates import TemplateRegistry, TemplateRequestError
from {{ cookiecutter.package_name }}.store import NotificationStore

from .conftest import auth, service
from .smtp_server import SmtpServer, running_server

EXPECTED = {
    ("welcome", "en"): ("Welcome to Acme Cloud, Ada Lovelace!", "Your account is ready."),
    ("welcome", "de"): ("Willkommen bei Acme Cloud, Ada Lovelace!", "Ihr Konto ist bereit."),
    ("password_reset", "en"): ("Reset your password", "Choose a new one within 2 hours"),
    ("password_reset", "de"): ("Passwort zurücksetzen", "innerhalb von 2 Stunden"),
    ("notification", "en"): ("Your export is ready", "Sent by"),
    ("notification", "de"): ("Your export is ready", "Gesendet von"),
}
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 2400  # 600 kB: several write slices and base64 blocks


def example(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((PACKAGED_TEMPLATES / name / "example.json").read_text())
    return data


def post(client: TestClient, **fields: object) -> tuple[int, Any]:
    response = client.post("/notifications", json={"to": ["ada@example.com"], **fields}, headers=auth())
    return response.status_code, response.json()


def stored_count(client: TestClient) -> int:
    return len(client.get("/notifications", headers=auth()).json()["items"])


def structure(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


@pytest.mark.parametrize(("name", "locale"), sorted(EXPECTED))
def test_each_sample_in_each_language_arrives_with_inlined_css_and_logo(
    client: TestClient, smtp_server: SmtpServer, name: str, locale: str
) -> None:
    code, answer = post(client, template=name, data=example(name), locale=locale)
    assert code == 202, answer

    [received] = smtp_server.handler.wait_for(1)
    message = received.message
    subject, phrase = EXPECTED[(name, locale)]
    assert message["Subject"] == subject
    assert structure(message) == [
        "multipart/related",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "image/png",
    ]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert phrase in text
    assert "&" not in text.replace("&middot;", "")  # plain text is not HTML-escaped
    assert 'style="max-width: 600px' in html  # CSS inlined when the template was loaded
    assert "@media" in html  # media queries stay in <style> (they cannot be inlined)
    assert 'src="cid:logo.png"' in html
    [logo] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert logo["Content-ID"] == "<logo.png>"
    assert logo.get_content().startswith(b"\x89PNG")
    assert message["X-Notification-ID"] == answer["id"]


def test_a_regional_locale_falls_back_to_its_language(client: TestClient, smtp_server: SmtpServer) -> None:
    assert post(client, template="welcome", data=example("welcome"), locale="de-CH")[0] == 202
    [received] = smtp_server.handler.wait_for(1)
    assert received.message["Subject"] == "Willkommen bei Acme Cloud, Ada Lovelace!"


def test_data_is_escaped_in_html_never_run_as_template(client: TestClient, smtp_server: SmtpServer) -> None:
    data = {**example("welcome"), "name": "<b>{{ '{{' }} 7 * 7 }}</b>"}
    assert post(client, template="welcome", data=data)[0] == 202
    [received] = smtp_server.handler.wait_for(1)
    html = received.message.get_body(preferencelist=("html",)).get_content()
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    assert "&lt;b&gt;{{ '{{' }} 7 * 7 }}&lt;/b&gt;" in html
    assert "<b>" not in html
    assert "<b>{{ '{{' }} 7 * 7 }}</b>" in text


@pytest.mark.parametrize(
    ("fields", "field", "named"),
    [
        ({"template": "welcome", "data": {"name": "Ada", "product": "Acme"}}, "data", "login_url"),
        ({"template": "invoice", "data": {}}, "template", "invoice"),
        ({"template": "welcome", "data": example("welcome"), "locale": "fr"}, "locale", "fr"),
        ({"template": "welcome", "data": example("welcome"), "locale": "x!"}, "locale", "x!"),
    ],
    ids=["missing-variable", "unknown-template", "unknown-locale", "bad-locale"],
)
def test_what_cannot_be_rendered_is_422_naming_it_and_nothing_is_stored(
    client: TestClient, smtp_server: SmtpServer, fields: dict[str, object], field: str, named: str
) -> None:
    code, answer = post(client, **fields)

    assert code == 422
    [error] = answer["detail"]
    assert error["loc"] == ["body", field]
    assert named in error["msg"]
    assert stored_count(client) == 0


def attachment(name: str, data: bytes, kind: str = "application/pdf") -> dict[str, str]:
    return {"filename": name, "content_type": kind, "content": base64.b64encode(data).decode()}


def test_attachments_arrive_in_multipart_mixed_with_safe_encoded_names(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    files = [
        attachment("../../Rechnung März.pdf", PDF),
        attachment("notes.txt", b"line\n.dot\n", "text/plain"),
    ]
    code, _ = post(client, template="welcome", data=example("welcome"), attachments=files)
    assert code == 202

    [received] = smtp_server.handler.wait_for(1)
    message = received.message
    assert structure(message) == [
        "multipart/mixed",
        "multipart/related",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "image/png",
        "application/pdf",
        "text/plain",
    ]
    pdf, notes = list(message.iter_attachments())
    assert pdf.get_filename() == "Rechnung März.pdf"
    assert b"filename*=utf-8''Rechnung%20M%C3%A4rz.pdf" in received.data.replace(b'"', b"")  # RFC 2231
    assert pdf.get_content() == PDF
    assert notes.get_filename() == "notes.txt"
    assert notes.get_payload(decode=True) == b"line\n.dot\n"


def test_attachments_are_deleted_with_the_content(
    client: TestClient, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, answer = post(client, subject="Report", body="Attached.", attachments=[attachment("a.pdf", PDF)])
    assert code == 202
    assert wait_for_status(client, answer["id"])["status"] == "sent"
    store: NotificationStore = client.app.state.store  # type: ignore[attr-defined]
    assert client.portal is not None
    assert len(client.portal.call(store.attachments, answer["id"])) == 1

    monkeypatch.setenv("BODY_RETENTION", "0")
    assert main(["purge"]) == 0
    assert client.portal.call(store.attachments, answer["id"]) == []


def test_plain_text_notification_takes_attachments_too(client: TestClient, smtp_server: SmtpServer) -> None:
    files = [attachment("a.pdf", PDF)]
    assert post(client, subject="Report", body="Attached.", format="text", attachments=files)[0] == 202
    [received] = smtp_server.handler.wait_for(1)
    assert structure(received.message) == ["multipart/mixed", "text/plain", "application/pdf"]


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ([attachment("big.bin", b"x" * 3000, "application/octet-stream")], "MAIL_MAX_ATTACHMENT_BYTES"),
        ([attachment("setup.exe", b"MZ", "application/octet-stream")], "MAIL_REFUSED_ATTACHMENT_TYPES"),
        ([attachment("run.sh", b"#!", "application/x-sh")], "MAIL_REFUSED_ATTACHMENT_TYPES"),
    ],
    ids=["too-large", "executable-by-name", "script-by-type"],
)
def test_refused_attachments_are_422_and_nothing_is_stored(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, files: list[dict[str, str]], named: str
) -> None:
    with service(monkeypatch, MAIL_MAX_ATTACHMENT_BYTES="2048") as client:
        code, answer = post(client, subject="Hi", body="Files", attachments=files)
        assert code == 422
        assert named in json.dumps(answer)
        assert stored_count(client) == 0
    assert smtp_server.received == []


def test_a_message_over_the_servers_size_fails_once_saying_so(
    ca: object, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_server(ca, ca_file, size_limit=20_000) as server:  # type: ignore[arg-type]
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        with service(monkeypatch) as client:
            code, answer = post(client, subject="Big", body="Files", attachments=[attachment("a.pdf", PDF)])
            assert code == 202
            status = wait_for_status(client, str(answer["id"]))
        assert server.received == []
    assert status["status"] == "failed"
    assert "SIZE" in str(status["attempts"][-1]["reply"])
    assert len(status["attempts"]) == 1  # permanent: no retries


def wait_for_status(client: TestClient, notification_id: str) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = client.get(f"/notifications/{notification_id}", headers=auth()).json()
        if found["status"] in ("sent", "failed"):
            return found
        time.sleep(0.05)
    raise AssertionError(f"notification {notification_id} did not finish")


def test_templates_check_renders_every_template_in_every_locale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["templates", "check"]) == 0
    assert "welcome: en, de" in capsys.readouterr().out

    broken = tmp_path / "email" / "receipt"
    (broken / "de").mkdir(parents=True)
    (broken / "subject.txt").write_text("Receipt {{ '{{' }} number }}")
    (broken / "body.txt").write_text("Total {{ '{{' }} total }}")
    (broken / "body.html").write_text("<p>Total {{ '{{' }} total }}</p>")
    (broken / "example.json").write_text('{"number": 7}')
    for name in ("subject.txt", "body.txt", "body.html"):
        (broken / "de" / name).write_text((broken / name).read_text())
    assert main(["templates", "check", "--dir", str(tmp_path / "email")]) == 1
    errors = capsys.readouterr().err
    assert "receipt (en)" in errors
    assert "receipt (de)" in errors
    assert "total" in errors


def test_openapi_lists_the_templates_and_their_variables(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    field = schema["components"]["schemas"]["NotificationRequest"]["properties"]["template"]
    assert field["x-templates"]["welcome"]["variables"] == ["login_url", "name", "product"]
    assert field["x-templates"]["password_reset"]["locales"] == ["en", "de"]
    assert "welcome" in json.dumps(field["anyOf"])


def test_dev_preview_renders_sandboxed_with_the_example(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, DEV_MODE="true") as client:
        page = client.get("/dev/templates/welcome", params={"locale": "de-CH"})
        assert page.status_code == 200
        assert "sandbox" in page.headers["Content-Security-Policy"]
        assert "Willkommen bei Acme Cloud" in page.text
        assert "data:image/png;base64," in page.text
        assert "Subject: Reset your password" in client.get("/dev/templates/password_reset/text").text
        assert client.get("/dev/templates/nope").status_code == 404
        remote = TestClient(client.app, base_url="http://localhost", client=("203.0.113.9", 4000))
        assert remote.get("/dev/templates/welcome").status_code == 403


def test_filters_write_dates_and_amounts_as_the_locale_does(tmp_path: Path) -> None:
    folder = tmp_path / "email" / "receipt"
    (folder / "de-CH").mkdir(parents=True)
    source = "{{ '{{' }} day | date('long') }} / {{ '{{' }} total | money('CHF') }} / {{ '{{' }} count | number }}"
    for where in (folder, folder / "de-CH"):
        for name in ("subject.txt", "body.txt", "body.html"):
            (where / name).write_text(source)
    registry = TemplateRegistry(tmp_path / "email")
    data = {"day": "2026-12-07", "total": "1234.5", "count": 1234567}

    english = registry.render("receipt", data).subject
    swiss = registry.render("receipt", data, "de-CH").subject  # CLDR's details vary with Babel's version
    assert english.startswith("December 7, 2026 / CHF")
    assert "1,234.50" in english
    assert swiss.startswith("7. Dezember 2026 / CHF")
    assert "234.50" in swiss
    assert "1,234" not in swiss
    with pytest.raises(TemplateRequestError, match="cannot be formatted"):
        registry.render("receipt", {**data, "day": "soon"})
