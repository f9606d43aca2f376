"""Throttling and quota replies are recognised by their codes, in tables and from a real server's refusals."""

from __future__ import annotations

import aiosmtplib
import pytest
from fastapi_mail import MessageSchema, MessageType

from {{ cookiecutter.package_name }}.mail import Mailer, MailError, MailSettings
from {{ cookiecutter.package_name }}.mail.core.errors import classify
from {{ cookiecutter.package_name }}.mail.core.throttling import Throttle, enhanced_status, throttle_of, throttle_of_error

from .smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

RATE, CONNECTIONS, QUOTA = Throttle.RATE, Throttle.CONNECTIONS, Throttle.QUOTA

REPLIES = [
    # Gmail (support.google.com/a/answer/3726730)
    (421, "4.7.0 Try again later, closing connection. (EHLO) - gsmtp", RATE),
    (
        421,
        "4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your SPF domain",
        RATE,
    ),
    (421, "4.4.5 Server busy, try again later.", RATE),
    (450, "4.2.1 Peak SMTP relay limit exceeded for customer. This is a temporary error.", RATE),
    (451, "4.7.28 rate limited", RATE),
    (452, "4.5.3 Your message has too many recipients.", RATE),
    (454, "4.7.0 Too many login attempts, please try again later.", RATE),
    (550, "5.4.5 Daily user sending limit exceeded. - gsmtp", QUOTA),
    (550, "5.4.5 Daily sending quota exceeded", QUOTA),
    # Exchange Online (learn.microsoft.com: NDR and SMTP errors; SMTP submission limits)
    (432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", CONNECTIONS),
    (432, "4.3.2 Concurrent connections limit exceeded", CONNECTIONS),
    (451, "4.7.500 Access denied, please try again later", RATE),
    (451, "4.7.650 The mail server has been temporarily rate limited", RATE),
    (451, "4.7.850 Access denied, please try again later", RATE),
    (
        554,
        "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message",
        QUOTA,
    ),
    (
        550,
        "5.1.90 Your message can't be sent because you've reached your daily limit for message recipients",
        QUOTA,
    ),
    (550, "5.7.233 Your message can't be sent because your tenant exceeded its daily limit", QUOTA),
    # Amazon SES (docs.aws.amazon.com/ses: errors related to sending quotas)
    (454, "Throttling failure: Maximum sending rate exceeded.", RATE),
    (454, "Throttling failure: Daily message quota exceeded.", RATE),
    # Not about the sender's pace: ordinary transient and permanent failures.
    (450, "4.2.0 Mailbox unavailable", None),
    (451, "4.3.0 Mail server temporarily rejected message.", None),
    (451, "4.7.1 Greylisted, please try again later", None),
    (452, "4.2.2 The email account that you tried to reach is over quota.", None),
    (454, "4.5.0 SMTP protocol violation, no commands allowed to pipeline after STARTTLS", None),
    (550, "5.1.1 The email account that you tried to reach does not exist.", None),
    (552, "5.2.2 The email account that you tried to reach is over quota.", None),
    (554, "5.2.0 STOREDRV.Deliver.Exception:StoreDriverRetireException", None),
    (550, "Daily sending quota exceeded", None),  # the prose alone says nothing: no code, no token
    (451, "5.4.5 a status of another class than the reply's", None),
]


@pytest.mark.parametrize(("code", "text", "expected"), REPLIES, ids=lambda value: str(value)[:24])
def test_replies_are_read_by_their_codes(code: int, text: str, expected: Throttle | None) -> None:
    assert throttle_of(code, text) is expected


def test_enhanced_status_is_the_first_token_only() -> None:
    assert enhanced_status("4.7.28 unusual rate") == (4, 7, 28)
    assert enhanced_status("  5.4.5 Daily sending quota exceeded") == (5, 4, 5)
    assert enhanced_status("Try again later 4.7.0") is None
    assert enhanced_status("4.7.0.1 not a status") is None


def test_errors_are_read_through_their_causes() -> None:
    quota = classify(aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending limit exceeded."))
    assert isinstance(quota, MailError)
    assert throttle_of_error(quota) is QUOTA
    refused = aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(452, "4.5.3 Too many recipients", "a@example.com"),
            aiosmtplib.SMTPRecipientRefused(550, "5.4.5 Daily sending quota exceeded", "b@example.com"),
        ]
    )
    assert throttle_of_error(classify(refused)) is QUOTA
    mixed = aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(452, "4.5.3 Too many recipients", "a@example.com"),
            aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown mailbox", "b@example.com"),
        ]
    )
    assert throttle_of_error(classify(mixed)) is None
    assert throttle_of_error(classify(TimeoutError("timed out"))) is None


def message() -> MessageSchema:
    return MessageSchema(
        subject="Report", recipients=["alice@example.com"], body="Hello", subtype=MessageType.plain
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("421 4.7.0 Try again later, closing connection.", RATE),
        ("451 4.7.28 Our system has detected an unusual rate of unsolicited mail", RATE),
        ("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", CONNECTIONS),
        ("550 5.4.5 Daily user sending limit exceeded.", QUOTA),
        ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed", QUOTA),
        ("451 4.3.0 Mail server temporarily rejected message.", None),
        ("550 5.7.1 Message rejected as spam", None),
    ],
)
async def test_a_real_servers_refusal_of_the_data_is_recognised(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, reply: str, expected: Throttle | None
) -> None:
    monkeypatch.setenv("MAIL_MAX_RETRIES", "0")
    smtp_server.handler.data_replies.extend([reply] * 2)  # a 421 on a pooled session is tried once more
    async with Mailer(MailSettings()) as mailer:
        with pytest.raises(MailError) as raised:
            await mailer.send(message())
    assert throttle_of_error(raised.value) is expected
    assert raised.value.reply_code == int(reply[:3])


async def test_a_message_every_recipient_of_which_is_throttled_is_recognised(smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_replies["alice@example.com"] = ["452 4.5.3 Too many recipients"] * 4
    async with Mailer(MailSettings()) as mailer:
        with pytest.raises(MailError) as raised:
            await mailer.send(message())
    assert throttle_of_error(raised.value) is RATE
