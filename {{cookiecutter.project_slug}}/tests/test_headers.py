"""Header injection: no control character reaches a header, and every header line on the wire is real.

The bytes are parsed as they arrived at a real SMTP server (STARTTLS, AUTH).
"""

from __future__ import annotations

import email
import random
import string
from email.policy import default

import pytest
from fastapi.testclient import TestClient
from fastapi_mail import MessageSchema, MessageType
from httpx import Response
from pydantic import NameEmail, ValidationError

from {{ cookiecutter.package_name }}.mail import Mailer, MailSettings, PermanentMailError, SettingsError, load_settings
from {{ cookiecutter.package_name }}.mail.core.addresses import international_addresses
from {{ cookiecutter.package_name }}.mail.core.headers import header_problem
from {{ cookiecutter.package_name }}.mail.core.mime import MAX_LINE, serialize
from {{ cookiecutter.package_name }}.notifications import NotificationContent

from .conftest import auth
from .smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

FORBIDDEN = [
    *(chr(code) for code in range(0x20) if code != 0x09),
    "\x7f",
    *(chr(code) for code in range(0x80, 0xA0)),
    "\u2028",
    "\u2029",
    "\ud800",
    "\udfff",
]
SHORT = "Hello"
LONG = "A" * 70
"""Past compat32's 78-column fold, where VT, FF, FS, GS and RS used to start a new header line."""


def subject_with(char: str, prefix: str) -> str:
    return f"{prefix}{char}Reply-To: attacker@evil.test"


@pytest.mark.parametrize("prefix", [SHORT, LONG], ids=["short", "long"])
@pytest.mark.parametrize("char", FORBIDDEN, ids=[f"U+{ord(char):04X}" for char in FORBIDDEN])
def test_every_control_character_and_lone_surrogate_is_refused_in_a_subject(char: str, prefix: str) -> None:
    with pytest.raises(ValidationError, match="subject"):
        NotificationContent(to=["a@example.com"], subject=subject_with(char, prefix), body="x")
    assert header_problem(subject_with(char, prefix)) is not None


def test_tab_and_ordinary_text_are_accepted() -> None:
    for subject in ("Tab\there", "Grüße aus Köln ✓", "x" * 998):
        assert header_problem(subject) is None
        assert NotificationContent(to=["a@example.com"], subject=subject, body="x").subject == subject


def test_api_answers_422_for_a_control_character_in_the_subject(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    for char in ("\x0b", "\x1c", "\x00", "\x85", "\u2028"):
        body = {"to": ["a@example.com"], "subject": LONG + char + "Reply-To: attacker@evil.test", "body": "x"}
        response = client.post("/notifications", json=body, headers=auth())
        assert response.status_code == 422, char
    assert smtp_server.received == []


@pytest.mark.parametrize(
    ("field", "template"),
    [
        ("subject", '"Marker-7f3a {} Reply-To: attacker@evil.test"'),
        ("body", '"Marker-7f3a {}"'),
        ("to", '["marker-7f3a{}@example.com"]'),
    ],
)
def test_api_answers_422_for_a_lone_surrogate_without_echoing_it(
    client: TestClient, smtp_server: SmtpServer, field: str, template: str
) -> None:
    def post(escape: str) -> Response:
        """The raw JSON escape, as a client sends it (Python's JSON encoders cannot write a lone surrogate)."""
        fields = {
            "to": '["a@example.com"]',
            "subject": '"Hello"',
            "body": '"x"',
            field: template.format(escape),
        }
        content = "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"
        response: Response = client.post(
            "/notifications", content=content, headers={**auth(), "Content-Type": "application/json"}
        )
        return response

    assert post("\\u00e9").status_code == 202  # the same request with a real character is accepted
    smtp_server.handler.wait_for(1)
    response = post("\\ud800")

    assert response.status_code == 422, response.text
    assert "Marker-7f3a" not in response.text
    assert "ud800" not in response.text.lower()
    assert len(smtp_server.received) == 1


@pytest.mark.parametrize("name", ["Sender\r\nBcc: victim@example.com", "Sender\x0bX: 1", "Sender\x1b[31m"])
def test_mail_from_name_with_a_control_character_stops_the_settings(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("MAIL_FROM_NAME", name)
    with pytest.raises(SettingsError, match="MAIL_FROM_NAME: must not contain") as raised:
        load_settings(MailSettings)
    assert name not in str(raised.value)


def raw_message(subject: str, *recipients: str) -> MessageSchema:
    """A message built without the API's validation, as a caller of the mail package may."""
    return MessageSchema(
        subject=subject,
        recipients=list(recipients or ["alice@example.com"]),
        body="Body",
        subtype=MessageType.plain,
        headers={"X-Notification-ID": "n-1"},
    )


@pytest.mark.parametrize("prefix", [SHORT, LONG], ids=["short", "long"])
@pytest.mark.parametrize("char", FORBIDDEN[:-2], ids=[f"U+{ord(char):04X}" for char in FORBIDDEN[:-2]])
async def test_mailer_refuses_to_send_a_header_that_would_break_its_line(
    smtp_server: SmtpServer, mail_settings: MailSettings, char: str, prefix: str
) -> None:
    async with Mailer(mail_settings) as mailer:
        with pytest.raises(PermanentMailError, match="building the message failed"):
            await mailer.send(raw_message(subject_with(char, prefix)))
    assert smtp_server.received == []


@pytest.mark.parametrize(
    "name", ["Alice\x0bBcc: victim@example.com", "Alice\r\nBcc: victim@example.com", "Al\x00ice"]
)
async def test_mailer_refuses_a_display_name_with_a_control_character(
    smtp_server: SmtpServer, mail_settings: MailSettings, name: str
) -> None:
    evil = MessageSchema(
        subject="Hello",
        recipients=[NameEmail(name=name, email="alice@example.com")],
        body="Body",
        subtype=MessageType.plain,
    )
    async with Mailer(mail_settings) as mailer:
        with pytest.raises(PermanentMailError, match="building the message failed"):
            await mailer.send(evil)
    assert smtp_server.received == []


def header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize(
    "subject",
    [
        "x" * 998,
        "word " * 199 + "end",
        "ü" * 998,
        "Tab\tinside and " + "y" * 990,
    ],
    ids=["998-no-spaces", "998-words", "998-non-ascii", "tab-and-long-word"],
)
async def test_long_subjects_arrive_intact_in_lines_of_at_most_998_characters(
    smtp_server: SmtpServer, mail_settings: MailSettings, subject: str
) -> None:
    async with Mailer(mail_settings) as mailer:
        await mailer.send(raw_message(subject))

    [received] = smtp_server.received
    lines = header_lines(received.data)
    assert max(len(line) for line in lines) <= MAX_LINE
    assert all(line[:1] in b" \t" or b":" in line for line in lines)
    assert received.message["Subject"] == subject
    assert received.message["Reply-To"] is None


@pytest.mark.parametrize(
    "subject",
    [
        "=?utf-8?q?Hello?=",
        "Your code is =?utf-8?b?w7w=?= (literally)",
        "A" * 200,
        "A" * 200 + " then a few words",
        " leading space",
        "x" * 70 + ",y" + "z" * 30,
    ],
    ids=[
        "encoded-word",
        "encoded-word-inside",
        "long-first-word",
        "long-first-word-then-words",
        "leading-space",
        "comma",
    ],
)
def test_the_subject_reads_back_as_it_was_posted(
    client: TestClient, smtp_server: SmtpServer, subject: str
) -> None:
    body = {"to": ["alice@example.com"], "subject": subject, "body": "x"}
    assert client.post("/notifications", json=body, headers=auth()).status_code == 202

    [received] = smtp_server.handler.wait_for(1)
    lines = header_lines(received.data)
    assert max(len(line) for line in lines) <= MAX_LINE
    assert all(line[:1] in b" \t" or b":" in line for line in lines)
    assert received.message["Subject"] == subject
    assert received.message["Reply-To"] is None


def test_random_subjects_read_back_as_they_were_written() -> None:
    chance = random.Random(20)
    alphabet = string.ascii_letters + string.digits + " \t,;:=?-_()<>\"'" + "äöü€😀"
    for _ in range(2000):
        subject = "".join(chance.choice(alphabet) for _ in range(chance.randint(1, 400)))
        built = email.message_from_string("From: a@example.com\n\nbody\n")
        built["Subject"] = subject
        parsed = email.message_from_bytes(serialize(built), policy=default)
        assert parsed["Subject"] == subject


async def test_international_domain_goes_out_in_punycode_without_smtputf8(
    smtp_server: SmtpServer, mail_settings: MailSettings
) -> None:
    async with Mailer(mail_settings) as mailer:
        result = await mailer.send(raw_message("IDN", "user@bücher.example", "bob@example.com"))

    [received] = smtp_server.received
    assert received.recipients == ("user@xn--bcher-kva.example", "bob@example.com")
    assert result.accepted == ("user@xn--bcher-kva.example", "bob@example.com")
    assert [address.addr_spec for address in received.message["To"].addresses] == [
        "user@xn--bcher-kva.example",
        "bob@example.com",
    ]
    assert received.data.isascii()


async def test_non_ascii_local_part_goes_out_with_smtputf8_and_utf8_headers(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_FROM", "absender@bücher.example")
    async with Mailer(MailSettings()) as mailer:
        await mailer.send(raw_message("UTF-8", "jörg@bücher.example", "bob@example.com"))

    [received] = smtp_server.received
    assert received.mail_from == "absender@xn--bcher-kva.example"
    assert received.recipients == ("jörg@xn--bcher-kva.example", "bob@example.com")
    parsed = email.message_from_string(received.data.decode(), policy=default)
    assert [address.addr_spec for address in parsed["To"].addresses] == [
        "jörg@xn--bcher-kva.example",
        "bob@example.com",
    ]
    assert parsed["From"].addresses[0].addr_spec == "absender@xn--bcher-kva.example"


def test_non_ascii_local_part_is_one_utf8_address_per_header_entry() -> None:
    built = email.message_from_string("Subject: s\n\nbody\n")
    built["To"] = "jörg@bücher.example, bob@example.com"
    data = serialize(international_addresses(built), utf8=True)
    parsed = email.message_from_string(data.decode(), policy=default)
    assert [address.addr_spec for address in parsed["To"].addresses] == [
        "jörg@xn--bcher-kva.example",
        "bob@example.com",
    ]
