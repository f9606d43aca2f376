"""DKIM: keys that load and keys that stop start-up, messages signed on the wire (with one key, or an RSA
and an Ed25519 key together) and verified by dkimpy against the published keys, headers added after
signing that break the signature, key files other users can read, and the key generator."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi_mail import MessageSchema, MessageType

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.mail import Mailer, MailSettings, SettingsError, load_settings
from {{ cookiecutter.package_name }}.mail.doctor.report import check_mail
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


def key_file(tmp_path: Path, data: bytes, name: str = "dkim.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(0o600)
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
    (signer,) = load_settings(MailSettings).dkim_signers
    assert (signer.domain, signer.selector, signer.algorithm) == ("example.com", "s1", algorithm)


def test_a_key_in_the_secret_variable_loads(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", "example.com")
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "s1")
    # one line in .env: the PEM's line breaks written as \n
    monkeypatch.setenv("MAIL_DKIM_PRIVATE_KEY", pem(ED25519_KEY, PKCS8).decode().replace("\n", "\\n"))
    settings = load_settings(MailSettings)
    assert len(settings.dkim_signers) == 1
    assert "PRIVATE KEY" not in repr(settings)


def refusal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: bytes, domain: str = "example.com") -> str:
    dkim_env(monkeypatch, key_file(tmp_path, data), domain)
    return refused(data)


def refused(data: bytes = b"") -> str:
    """The one-line message of the settings that do not load, checked to hold no key material."""
    with pytest.raises(SettingsError) as raised:
        load_settings(MailSettings)
    message = str(raised.value)
    assert "\n" not in message
    key_lines = [line for line in data.decode(errors="replace").splitlines() if len(line) > 20]
    assert not any(line in message for line in key_lines), "key material in the message"
    return message


def test_a_1024_bit_rsa_key_is_refused(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the key to refuse
    assert refusal(monkeypatch, tmp_path, pem(short, PKCS8)) == (
        f"invalid settings: MAIL_DKIM_PRIVATE_KEY_FILE={tmp_path / 'dkim.pem'} (selector s1) is a 1024-bit RSA "
        "key, which receivers reject: use RSA of 2048 bits or more, or Ed25519"
    )


def test_garbage_is_refused(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    armour = "-----{} PRIVATE KEY-----\n"  # built here: a literal PEM header would trip the secret scanners
    garbage = (armour.format("BEGIN") + "bm90IGEga2V5IGF0IGFsbA==\n" + armour.format("END")).encode()
    assert refusal(monkeypatch, tmp_path, garbage) == (
        f"invalid settings: MAIL_DKIM_PRIVATE_KEY_FILE={tmp_path / 'dkim.pem'} (selector s1) is not a PEM private "
        "key (PKCS#1 or PKCS#8, unencrypted): generate one with dkim-keygen"
    )


def test_a_key_of_another_kind_is_refused(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = refusal(monkeypatch, tmp_path, pem(ec.generate_private_key(ec.SECP256R1()), PKCS8))
    assert f"MAIL_DKIM_PRIVATE_KEY_FILE={tmp_path / 'dkim.pem'} (selector s1) is a " in message
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
    with pytest.raises(
        SettingsError, match=r"MAIL_DKIM_PRIVATE_KEY_FILE=\S+ \(selector s1\) is not a PEM private key"
    ):
        Settings.from_env()


def published(*signers: DkimSigner) -> Callable[..., bytes | None]:
    """A dkimpy dnsfunc answering each selector's TXT record."""
    records = {signer.record_name: signer.dns_record().encode() for signer in signers}

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name.decode().rstrip("."))

    return dnsfunc


def verifies(data: bytes, dnsfunc: Callable[..., bytes | None], signature: int = 0) -> bool:
    """Whether dkimpy verifies the `signature`-th DKIM-Signature of `data` (0: the first, at the top)."""
    return bool(dkim.DKIM(data).verify(idx=signature, dnsfunc=dnsfunc))


def tags_of(value: bytes | str) -> dict[bytes, bytes]:
    """The tags of a DKIM-Signature value, folding whitespace removed."""
    raw = value.encode() if isinstance(value, str) else value
    return {tag: b"".join(text.split()) for tag, text in dkim.util.parse_tag_value(raw).items()}


OVERSIGNED_H = (
    b"from:from:to:to:cc:cc:subject:subject:date:date:message-id:message-id:mime-version:content-type:"
    b"reply-to:reply-to"
)


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
    async with Mailer(settings) as mailer:
        await mailer.send(MESSAGE)
    (received,) = smtp_server.handler.wait_for(1)
    data = received.data
    dnsfunc = published(*settings.dkim_signers)

    assert data.count(b"DKIM-Signature:") == 1
    assert dkim.verify(data, dnsfunc=dnsfunc)
    tags = tags_of(received.message["DKIM-Signature"])
    # a multipart top level has no Content-Transfer-Encoding: only the headers present are signed, and
    # those a forger would add once more than they occur
    assert tags[b"h"] == OVERSIGNED_H

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
    signature = DkimSigner.signature

    def counting(signer: DkimSigner, *args: bytes) -> bytes:
        signatures.append(args[1])
        return signature(signer, *args)

    # the real signer, counted: the same bytes sign alike
    monkeypatch.setattr(DkimSigner, "signature", counting)
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
    (signer,) = load_settings(MailSettings).dkim_signers
    signed = signer.sign(
        b"From: a@example.com\r\nTo: b@example.com\r\nX-Other: 1\r\nSubject: s\r\n\r\nbody\r\n"
    )
    tags = tags_of(signed.split(b"\r\nFrom:")[0].split(b":", 1)[1])
    # present: signed (the forgeable ones twice, once for a copy added later); absent: Cc, Date, Message-ID
    # and Reply-To once each, so adding one breaks the signature
    assert tags[b"h"] == b"from:from:to:to:cc:subject:subject:date:message-id:reply-to"
    assert (tags[b"c"], tags[b"d"], tags[b"s"]) == (b"relaxed/relaxed", b"example.com", b"s1")


SIGNED = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: invoice\r\nDate: Wed, 2 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nPay to 1.\r\n"
)


@pytest.mark.parametrize("key", [RSA_KEY, ED25519_KEY], ids=["rsa-2048", "ed25519"])
@pytest.mark.parametrize(
    "added",
    [
        b"Subject: urgent: pay to 2\r\n",
        b"From: ceo@example.com\r\n",
        b"To: victim@example.org\r\n",
        b"Cc: victim@example.org\r\n",
        b"Reply-To: attacker@example.org\r\n",
        b"Date: Thu, 3 Dec 2026 12:00:00 +0000\r\n",
        b"Message-ID: <2@example.com>\r\n",
    ],
    ids=lambda added: added.split(b":")[0].decode().lower(),
)
def test_a_header_a_forger_adds_after_signing_breaks_the_signature(key: Any, added: bytes) -> None:
    """RFC 6376 8.15: each listed once more in h= than it occurs, so a copy added above (or an absent
    one added) is signed as absent and no longer matches."""
    signer = DkimSigner("example.com", "s1", key)
    signed = signer.sign(SIGNED)
    dnsfunc = published(signer)
    assert verifies(signed, dnsfunc)
    assert not verifies(added + signed, dnsfunc)  # prepended above the signature, as a forger would
    name, _, rest = signed.partition(b"\r\nFrom:")
    assert not verifies(name + b"\r\n" + added + b"From:" + rest, dnsfunc)  # or among the signed fields


@pytest.mark.anyio
async def test_rsa_and_ed25519_sign_together_and_a_second_subject_fails_both(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RFC 8463: a receiver that knows no Ed25519 (Mail::DKIM) verifies the RSA signature, which comes first."""
    ed_file = key_file(tmp_path, pem(ED25519_KEY, PKCS8), "ed.pem")
    rsa_file = key_file(tmp_path, pem(RSA_KEY, PKCS1), "rsa.pem")
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", "example.com")
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "ed1, rsa1")
    monkeypatch.setenv("MAIL_DKIM_PRIVATE_KEY_FILE", f"{ed_file},{rsa_file}")
    settings = load_settings(MailSettings)
    assert [(signer.selector, signer.algorithm) for signer in settings.dkim_signers] == [
        ("rsa1", b"rsa-sha256"),
        ("ed1", b"ed25519-sha256"),
    ]
    async with Mailer(settings) as mailer:
        await mailer.send(MESSAGE)
    (received,) = smtp_server.handler.wait_for(1)
    data = received.data
    dnsfunc = published(*settings.dkim_signers)

    assert data.count(b"DKIM-Signature:") == 2
    signatures = [tags_of(value) for value in received.message.get_all("DKIM-Signature")]
    assert [(tags[b"a"], tags[b"s"]) for tags in signatures] == [
        (b"rsa-sha256", b"rsa1"),
        (b"ed25519-sha256", b"ed1"),
    ]
    assert all(tags[b"h"] == OVERSIGNED_H for tags in signatures)
    assert verifies(data, dnsfunc, 0)
    assert verifies(data, dnsfunc, 1)
    forged = b"Subject: Urgent: new bank details\r\n" + data
    assert not verifies(forged, dnsfunc, 0)
    assert not verifies(forged, dnsfunc, 1)


def test_selectors_and_key_files_must_pair_up(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rsa_file = key_file(tmp_path, pem(RSA_KEY, PKCS8), "rsa.pem")
    ed_file = key_file(tmp_path, pem(ED25519_KEY, PKCS8), "ed.pem")
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", "example.com")
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "rsa1")
    monkeypatch.setenv("MAIL_DKIM_PRIVATE_KEY_FILE", f"{rsa_file},{ed_file}")
    assert refused() == (
        "invalid settings: MAIL_DKIM_SELECTOR lists 1 selector(s) (rsa1) but MAIL_DKIM_PRIVATE_KEY_FILE 2 key(s): "
        "give one key per selector, comma-separated in the same order"
    )
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "rsa1,rsa1")
    assert "MAIL_DKIM_SELECTOR lists rsa1 twice: give each key its own selector" in refused()
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "rsa1,ed 1")
    assert "MAIL_DKIM_SELECTOR: 'ed 1' is not a DNS name" in refused()


def test_a_bad_key_among_several_is_named_by_its_file_and_selector(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rsa_file = key_file(tmp_path, pem(RSA_KEY, PKCS8), "rsa.pem")
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the key to refuse
    short_file = key_file(tmp_path, pem(short, PKCS8), "short.pem")
    monkeypatch.setenv("MAIL_DKIM_DOMAIN", "example.com")
    monkeypatch.setenv("MAIL_DKIM_SELECTOR", "rsa1,old,gone")
    monkeypatch.setenv("MAIL_DKIM_PRIVATE_KEY_FILE", f"{rsa_file},{short_file},{tmp_path / 'gone.pem'}")
    assert refused(pem(short, PKCS8)) == (
        f"invalid settings: MAIL_DKIM_PRIVATE_KEY_FILE={short_file} (selector old) is a 1024-bit RSA key, which "
        "receivers reject: use RSA of 2048 bits or more, or Ed25519; "
        f"MAIL_DKIM_PRIVATE_KEY_FILE={tmp_path / 'gone.pem'} (selector gone) could not be read (No such file or "
        "directory): check the path"
    )


def test_signing_with_ed25519_alone_is_warned_about(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dkim_env(monkeypatch, key_file(tmp_path, pem(ED25519_KEY, PKCS8)))
    [warning] = load_settings(MailSettings).warnings()
    assert warning.startswith("MAIL_DKIM_SELECTOR signs with Ed25519 only")
    assert "add an RSA key" in warning
    dkim_env(monkeypatch, key_file(tmp_path, pem(RSA_KEY, PKCS8)))
    assert load_settings(MailSettings).warnings() == []


@pytest.mark.parametrize(("mode", "who"), [(0o644, "other users of this machine"), (0o640, "its group")])
def test_a_key_file_others_can_read_is_warned_about_at_check_mail_and_start_up(
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: int,
    who: str,
) -> None:
    path = key_file(tmp_path, pem(RSA_KEY, PKCS8))
    dkim_env(monkeypatch, path)
    assert load_settings(MailSettings).warnings() == []  # 0600: nothing to say

    path.chmod(mode)
    expected = (
        f"MAIL_DKIM_PRIVATE_KEY_FILE={path} holds a private key and can be read by {who} "
        f"(mode {mode:04o}): chmod 600 {path}"
    )
    report = check_mail()
    assert report.exit_code == 0, report.render()
    assert report.warnings == (expected,)  # check-mail prints each on stderr
    caplog.set_level(logging.WARNING)
    asyncio.run(Mailer(load_settings(MailSettings)).aclose())  # the service's Mailer, as it starts
    assert expected in caplog.messages


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
