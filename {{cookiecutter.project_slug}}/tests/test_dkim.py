"""DKIM: keys that load and keys that stop start-up, messages signed on the wire and verified by
dkimpy against the published key, and the key generator."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi_mail import MessageSchema, MessageType

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.mail import Mailer, MailSettings, SettingsError, load_settings
from {{ cookiecutter.package_name }}.mail.signing.dkim import DkimSigner, load_key
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import API_KEY
from .smtp_server import SmtpServer

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(key: Any, form: serialization.PrivateFormat) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()))


PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
PKCS8 = serialization.PrivateFormat.PKCS8


def key_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(data)
    return path


def dkim_env(monkeypatch: pytest.MonkeyPatch, path: Path, domain: str = "example.com") -> None:
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", domain)
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "s1")
    monkeypatch.setenv("MAIL_DKIM_PRIVATE_KEY_FILE", str(path))


@pytest.mark.parametrize(
    ("key", "form", "algorithm"),
    [
        (RSA_KEY, PKCS1, b"rsa-sha256"),
        (RSA_KEY, PKCS8, b"rsa-sha256"),
        (ED25519_KEY, PKCS8, b"ed25519-sha256"),
    ],
    ids=["rsa-pkcs1", "rsa-pkcs8", "ed25519-pkcs8"],
)
def test_keys_that_load(
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    key: Any,
    form: Any,
    algorithm: bytes,
) -> None:
    dkim_env(monkeypatch, key_file(tmp_path, pem(key, form)))
    signer = load_settings(MailSettings).dkim_signer
    assert signer is not None
    assert (signer.domain, signer.selector, signer.algorithm) == ("example.com", "s1", algorithm)


def test_a_key_in_the_secret_variable_loads(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", "example.com")
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "s1")
    # one line in .env: the PEM's line breaks written as \n
    monkeypatch.setenv("MAIL_DKIM_PRIVATE_KEY", pem(ED25519_KEY, PKCS8).decode().replace("\n", "\\n"))
    settings = load_settings(MailSettings)
    assert settings.dkim_signer is not None
    assert "PRIVATE KEY" not in repr(settings)


def refusal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: bytes, domain: str = "example.com") -> str:
    dkim_env(monkeypatch, key_file(tmp_path, data), domain)
    with pytest.raises(SettingsError) as refused:
        load_settings(MailSettings)
    message = str(refused.value)
    assert "\n" not in message
    key_lines = [line for line in data.decode(errors="replace").splitlines() if len(line) > 20]
    assert not any(line in message for line in key_lines), "key material in the message"
    return message


def test_a_1024_bit_rsa_key_is_refused(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the key to refuse
    assert refusal(monkeypatch, tmp_path, pem(short, PKCS8)) == (
        "invalid settings: MAIL_DKIM_PRIVATE_KEY_FILE is a 1024-bit RSA key, which receivers reject: "
        "use RSA of 2048 bits or more, or Ed25519"
    )


def test_garbage_is_refused(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    armour = "-----{} PRIVATE KEY-----\n"  # built here: a literal PEM header would trip the secret scanners
    garbage = (armour.format("BEGIN") + "bm90IGEga2V5IGF0IGFsbA==\n" + armour.format("END")).encode()
    assert refusal(monkeypatch, tmp_path, garbage) == (
        "invalid settings: MAIL_DKIM_PRIVATE_KEY_FILE is not a PEM private key (PKCS#1 or PKCS#8, "
        "unencrypted): generate one with dkim-keygen"
    )


def test_a_key_of_another_kind_is_refused(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = refusal(monkeypatch, tmp_path, pem(ec.generate_private_key(ec.SECP256R1()), PKCS8))
    assert "MAIL_DKIM_PRIVATE_KEY_FILE is a " in message
    assert "DKIM needs RSA (2048+ bits) or Ed25519" in message


def test_a_domain_that_does_not_align_with_mail_from_is_refused(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = refusal(monkeypatch, tmp_path, pem(ED25519_KEY, PKCS8), domain="example.org")
    assert message == (
        "invalid settings: MAIL_DKIM_DOMAIN=example.org does not align with MAIL_FROM's domain example.com, "
        "so DMARC ignores the signature: set MAIL_DKIM_DOMAIN to that domain (or a parent of it)"
    )


def test_half_configured_signing_names_what_is_missing(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", "example.com")
    with pytest.raises(
        SettingsError, match=r"DKIM signing needs MAIL_DKIM_SELECTOR and MAIL_DKIM_PRIVATE_KEY_FILE"
    ):
        load_settings(MailSettings)


def test_the_service_refuses_to_start_with_a_bad_key(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dkim_env(monkeypatch, key_file(tmp_path, b"not a key"))
    monkeypatch.setenv("API_KEYS", API_KEY)
    with pytest.raises(SettingsError, match="MAIL_DKIM_PRIVATE_KEY_FILE is not a PEM private key"):
        Settings.from_env()


def published(signer: DkimSigner) -> Any:
    """A dkimpy dnsfunc answering the selector's TXT record."""

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return signer.dns_record().encode() if name.decode().rstrip(".") == signer.record_name else None

    return dnsfunc


MESSAGE = MessageSchema(
    subject="Signed ✓ subject",
    recipients=["user@example.com"],
    cc=["copy@example.com"],
    reply_to=["replies@example.com"],
    body="Hello,\n\nthis message is signed.\n",
    subtype=MessageType.plain,
    headers={"X-Notification-ID": "n-1"},
)


@pytest.mark.anyio
@pytest.mark.parametrize("key", [RSA_KEY, ED25519_KEY], ids=["rsa-2048", "ed25519"])
async def test_signed_mail_verifies_after_a_relay_and_fails_when_tampered(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: Any
) -> None:
    dkim_env(monkeypatch, key_file(tmp_path, pem(key, PKCS8)))
    settings = load_settings(MailSettings)
    assert settings.dkim_signer is not None
    async with Mailer(settings) as mailer:
        await mailer.send(MESSAGE)
    (received,) = smtp_server.handler.wait_for(1)
    data = received.data
    dnsfunc = published(settings.dkim_signer)

    assert data.count(b"DKIM-Signature:") == 1
    assert dkim.verify(data, dnsfunc=dnsfunc)
    tags = dict(dkim.util.parse_tag_value(received.message["DKIM-Signature"].encode()))
    # a multipart top level has no Content-Transfer-Encoding: only the headers present are signed
    assert tags[b"h"] == b"from:to:cc:subject:date:message-id:mime-version:content-type:reply-to"

    relayed = (
        b"Return-Path: <noreply@example.com>\r\nReceived: from client by relay.example.net; Wed, 2 Dec 2026 12:00:00 +0000\r\n"
        + data
    )
    assert dkim.verify(relayed, dnsfunc=dnsfunc)
    tampered = data.replace(b"SGVsbG8s", b"SGVsbG9s", 1)  # base64 of "Hello," becomes "Hello."
    assert tampered != data
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    assert not dkim.verify(data.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dnsfunc)


@pytest.mark.anyio
async def test_a_retried_message_is_signed_once_for_every_attempt(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dkim_env(monkeypatch, key_file(tmp_path, pem(ED25519_KEY, PKCS8)))
    sent: list[bytes] = []
    accept = smtp_server.handler.handle_DATA

    async def recording(server: Any, session: Any, envelope: Any) -> str:
        sent.append(bytes(envelope.original_content))
        return await accept(server, session, envelope)

    signatures: list[bytes] = []
    sign = DkimSigner.sign

    def counting(signer: DkimSigner, data: bytes) -> bytes:
        signatures.append(data)
        return sign(signer, data)

    monkeypatch.setattr(DkimSigner, "sign", counting)  # the real signer, counted: the same bytes sign alike
    monkeypatch.setattr(smtp_server.handler, "handle_DATA", recording)
    smtp_server.handler.data_replies.append("451 4.3.0 try again later")
    async with Mailer(load_settings(MailSettings)) as mailer:
        result = await mailer.send(MESSAGE)
    assert result.attempts == 2
    assert len(signatures) == 1
    assert len(sent) == 2
    assert sent[0] == sent[1]
    assert sent[0].count(b"DKIM-Signature:") == 1


@pytest.mark.parametrize("key", [RSA_KEY, ED25519_KEY], ids=["rsa-2048", "ed25519"])
@pytest.mark.parametrize(
    "data",
    [
        b"From: a@example.com\r\nTo:  b@example.com \r\nSubject:\tfolded\r\n \t subject  \r\n\r\n"
        b"  spaces \t inside \r\ntrailing \t \r\n\r\n \r\n\r\n",
        b"From: a@example.com\r\nSubject: first\r\nsubject: second\r\nX-Other: 1\r\n\r\n",
        b"From: a@example.com\r\nSubject: empty lines only\r\n\r\n\r\n\r\n",
        b"From: a@example.com\r\nSubject: no final line end\r\n\r\nlast line",
        b"From: a@example.com\nSubject: bare LF\n\nline\none\n",
        b"From: a@example.com\r\nSubject: a stray CR\r\n\r\nx\r\r\n",
    ],
    ids=["whitespace", "repeated-header", "blank-body", "no-final-crlf", "bare-lf", "stray-cr"],
)
def test_the_canonical_forms_match_dkimpys(key: Any, data: bytes) -> None:
    signer = DkimSigner("example.com", "s1", key)
    signed = signer.sign(data)
    assert dkim.verify(signed, dnsfunc=published(signer))
    # what is signed is what aiosmtplib sends: every line ends in CRLF, no bare CR or LF
    assert signed.count(b"\r") == signed.count(b"\n") == signed.count(b"\r\n")


def test_the_signature_covers_the_headers_present(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dkim_env(monkeypatch, key_file(tmp_path, pem(ED25519_KEY, PKCS8)))
    signer = load_settings(MailSettings).dkim_signer
    assert signer is not None
    signed = signer.sign(
        b"From: a@example.com\r\nTo: b@example.com\r\nX-Other: 1\r\nSubject: s\r\n\r\nbody\r\n"
    )
    tags = dict(dkim.util.parse_tag_value(signed.split(b"\r\nFrom:")[0].split(b":", 1)[1]))
    assert tags[b"h"] == b"from:to:subject"
    assert (tags[b"c"], tags[b"d"], tags[b"s"]) == (b"relaxed/relaxed", b"example.com", b"s1")


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_keygen_writes_a_private_key_and_prints_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str
) -> None:
    out = tmp_path / "dkim.pem"
    assert (
        main(
            [
                "dkim-keygen",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--out",
                str(out),
                "--algorithm",
                algorithm,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    signer = DkimSigner("example.com", "s1", load_key(out.read_bytes()))
    assert "publish this TXT record at s1._domainkey.example.com:" in printed
    assert f"  {signer.dns_record()}\n" in printed
    assert "PRIVATE KEY" not in printed
    message = signer.sign(b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n")
    assert dkim.verify(
        message, dnsfunc=lambda name, timeout=5: printed.split("  ", 1)[1].split("\n")[0].encode()
    )


def test_dkim_keygen_never_overwrites_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dkim.pem"
    out.write_text("an existing key")
    assert main(["dkim-keygen", "--domain", "example.com", "--selector", "s1", "--out", str(out)]) == 1
    assert out.read_text() == "an existing key"
    assert "exists" in capsys.readouterr().out
