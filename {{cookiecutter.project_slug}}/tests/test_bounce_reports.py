"""Bounce messages become DeliveryEvents: real Postfix and Exchange Online DSNs, a text bounce, VERP."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from {{ cookiecutter.package_name }}.feedback.bounces import SOURCE, notification_id_from, read_report, verp_address
from {{ cookiecutter.package_name }}.feedback.events import BounceKind, DeliveryEvent, EventType

from .bounce_samples import (
    BOUNCE_DOMAIN,
    EXCHANGE_ID,
    POSTFIX_BOUNCE_ID,
    POSTFIX_DELAY_ID,
    QMAIL_ID,
    sample,
    sent_message_id,
)

ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def by_recipient(events: list[DeliveryEvent]) -> dict[str, DeliveryEvent]:
    assert len({event.recipient for event in events}) == len(events), "one event per recipient"
    return {event.recipient: event for event in events}


def dsn(
    *blocks: str, to: str = f"bounces+{ID}@{BOUNCE_DOMAIN}", fields: str = "", encode: bool = False
) -> bytes:
    """A minimal RFC 3464 report with the given per-recipient blocks (header lines, LF-separated)."""
    status = "Reporting-MTA: dns; mx.example.net\n" + fields + "\n" + "\n".join(blocks)
    encoding = "7bit"
    if encode:
        status, encoding = base64.encodebytes(status.encode()).decode(), "base64"
    return (
        f"From: MAILER-DAEMON@mx.example.net\nTo: {to}\nSubject: Returned mail\n"
        "Date: Tue, 8 Dec 2026 09:30:00 +0100\nMessage-ID: <report-1@mx.example.net>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        f"--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: {encoding}\n\n{status}\n"
        "--b\nContent-Type: text/rfc822-headers\n\n"
        f"Message-ID: <{ID}@example.com>\nSubject: Hello\n\n--b--\n"
    ).encode()


def block(action: str, status: str = "", recipient: str = "rcpt@example.org", extra: str = "") -> str:
    lines = [f"Final-Recipient: rfc822; {recipient}", f"Action: {action}"]
    lines += [f"Status: {status}"] if status else []
    return "\n".join(lines) + "\n" + extra


def test_postfix_bounce_gives_a_hard_and_a_soft_bounce_matched_by_verp() -> None:
    events = by_recipient(read_report(sample("postfix-bounce"), BOUNCE_DOMAIN))

    assert set(events) == {"nobody@example.org", "full@example.net"}
    unknown, full = events["nobody@example.org"], events["full@example.net"]
    assert (unknown.type, unknown.bounce, unknown.status) == (EventType.BOUNCED, BounceKind.HARD, "5.1.1")
    assert unknown.diagnostic == (
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    # 5.2.2, a full mailbox: RFC 3463 calls it a persistent transient failure, so it is soft whatever its class.
    assert (full.type, full.bounce, full.status) == (EventType.BOUNCED, BounceKind.SOFT, "5.2.2")
    assert full.diagnostic == "552 5.2.2 <full@example.net>: Mailbox full, quota exceeded"
    for event in events.values():
        assert event.notification_id == POSTFIX_BOUNCE_ID
        assert event.message_id == sent_message_id(POSTFIX_BOUNCE_ID)
        assert event.source == SOURCE
        assert event.occurred_at == datetime(2026, 12, 7, 18, 0, 2, tzinfo=UTC)
    assert unknown.event_id != full.event_id


def test_postfix_delay_is_deferred_with_its_status_and_diagnostic() -> None:
    (event,) = read_report(sample("postfix-delay"), BOUNCE_DOMAIN)

    assert (event.type, event.bounce, event.recipient) == (EventType.DEFERRED, None, "slow@example.net")
    assert event.status == "4.4.1"
    assert event.diagnostic == "connect to mx.example.net[198.51.100.9]:25: Connection timed out"
    assert (event.notification_id, event.message_id) == (POSTFIX_DELAY_ID, sent_message_id(POSTFIX_DELAY_ID))


def test_exchange_online_ndr_without_verp_is_matched_by_the_returned_message_id() -> None:
    (event,) = read_report(sample("exchange-online-ndr"), BOUNCE_DOMAIN)

    assert (event.type, event.bounce, event.recipient) == (
        EventType.BOUNCED,
        BounceKind.HARD,
        "gone@contoso.com",
    )
    assert event.status == "5.1.10"
    assert event.diagnostic == (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient gone@contoso.com not found by SMTP address lookup"
    )
    assert event.notification_id is None  # sent to noreply@example.com: no VERP
    assert event.message_id == sent_message_id(EXCHANGE_ID)


def test_a_text_bounce_gives_a_hard_bounce_without_status_matched_only_by_verp() -> None:
    """qmail's bounce is no DSN: flufl.bounce finds the address; its returned message is text, not headers."""
    (event,) = read_report(sample("qmail-bounce"), BOUNCE_DOMAIN)

    assert (event.type, event.bounce, event.recipient) == (
        EventType.BOUNCED,
        BounceKind.HARD,
        "left@example.net",
    )
    assert (event.status, event.diagnostic) == ("", "")
    assert (event.notification_id, event.message_id) == (QMAIL_ID, None)


def test_a_message_that_is_no_bounce_gives_no_event() -> None:
    assert read_report(sample("unrelated"), BOUNCE_DOMAIN) == []


def test_verp_is_read_only_on_the_bounce_domain() -> None:
    raw = sample("postfix-bounce")

    assert {event.notification_id for event in read_report(raw, None)} == {None}
    assert {event.notification_id for event in read_report(raw, "other.example.com")} == {None}
    assert {event.message_id for event in read_report(raw, None)} == {sent_message_id(POSTFIX_BOUNCE_ID)}


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("failed", "5.1.1", (EventType.BOUNCED, BounceKind.HARD)),
        ("failed", "5.7.1 (delivery not authorized)", (EventType.BOUNCED, BounceKind.HARD)),
        ("failed", "", (EventType.BOUNCED, BounceKind.HARD)),
        ("failed", "4.4.7", (EventType.BOUNCED, BounceKind.SOFT)),  # gave up after retrying: transient cause
        ("failed", "5.2.2", (EventType.BOUNCED, BounceKind.SOFT)),
        ("error", "5.1.1", (EventType.BOUNCED, BounceKind.HARD)),  # OpenSMTPD's word for failed
        ("delayed", "4.2.2", (EventType.DEFERRED, None)),
        ("delivered", "2.0.0", (EventType.DELIVERED, None)),
    ],
)
def test_action_and_status_decide_the_event(
    action: str, status: str, expected: tuple[EventType, BounceKind]
) -> None:
    (event,) = read_report(dsn(block(action, status)), BOUNCE_DOMAIN)

    assert (event.type, event.bounce) == expected
    assert event.status == status.split(" ")[0]
    assert (event.notification_id, event.message_id) == (ID, f"<{ID}@example.com>")


@pytest.mark.parametrize("action", ["relayed", "expanded"])
def test_actions_that_say_nothing_final_give_no_event(action: str) -> None:
    assert read_report(dsn(block(action, "2.0.0")), BOUNCE_DOMAIN) == []


def test_status_and_diagnostic_are_one_printable_line() -> None:
    diagnostic = (
        "Diagnostic-Code: smtp; 550-5.1.1 Bo\u00eete\n inconnue\t\x07here\n"  # raw UTF-8, folded, a BEL
    )
    raw = dsn(block("failed", "5.1", extra=diagnostic))

    (event,) = read_report(raw, BOUNCE_DOMAIN)

    assert event.status == ""  # not an enhanced status code: left out rather than guessed
    assert event.diagnostic == "550-5.1.1 Bo\u00eete inconnue here"
    assert event.diagnostic.isprintable()
    assert event.bounce == BounceKind.HARD


def test_original_recipient_is_the_address_sent_to_and_each_recipient_has_its_event() -> None:
    forwarded = "Original-Recipient: rfc822;alias@example.org\n"
    raw = dsn(
        block("failed", "5.1.1", recipient="mailbox@example.net", extra=forwarded),
        block("delayed", "4.4.1", recipient="other@example.org"),
    )

    events = by_recipient(read_report(raw, BOUNCE_DOMAIN))

    assert set(events) == {"alias@example.org", "other@example.org"}
    assert events["alias@example.org"].type == EventType.BOUNCED
    assert events["other@example.org"].type == EventType.DEFERRED


def test_original_envelope_id_names_the_notification() -> None:
    """A bare id (ENVID) works without VERP; a VERP address there (xtext, `+` as +2B) on the bounce domain too."""
    bare = dsn(block("failed", "5.1.1"), to="noreply@example.com", fields=f"Original-Envelope-Id: {ID}\n")
    verp = f"Original-Envelope-Id: bounces+2B{ID}@{BOUNCE_DOMAIN}\n"
    xtext = dsn(block("failed", "5.1.1"), to="noreply@example.com", fields=verp)

    assert [event.notification_id for event in read_report(bare, None)] == [ID]
    assert [event.notification_id for event in read_report(xtext, BOUNCE_DOMAIN)] == [ID]
    assert [event.notification_id for event in read_report(xtext, None)] == [None]


def test_an_encoded_delivery_status_part_is_read() -> None:
    (event,) = read_report(dsn(block("failed", "5.1.1"), encode=True), BOUNCE_DOMAIN)

    assert (event.recipient, event.status, event.notification_id) == ("rcpt@example.org", "5.1.1", ID)


def test_reading_a_report_again_gives_the_same_event_ids() -> None:
    raw = sample("postfix-bounce")
    first, again = read_report(raw, BOUNCE_DOMAIN), read_report(raw, BOUNCE_DOMAIN)

    assert [event.event_id for event in first] == [event.event_id for event in again]
    assert all(len(event.event_id) == 32 for event in first)


def test_verp_address_round_trip() -> None:
    address = verp_address(ID, BOUNCE_DOMAIN)

    assert address == f"bounces+{ID}@{BOUNCE_DOMAIN}"
    assert notification_id_from(address, BOUNCE_DOMAIN) == ID
    assert notification_id_from(f"<{address}>", BOUNCE_DOMAIN) == ID
    assert notification_id_from(f"Returned <{address.upper()}>", BOUNCE_DOMAIN.upper() + ".") == ID


@pytest.mark.parametrize(
    "notification_id", [ID.upper(), ID[:-1], ID + "0", ID[:-1] + "g", "", f"{ID}@x", f"../{ID[3:]}"]
)
def test_verp_address_refuses_anything_but_an_id(notification_id: str) -> None:
    with pytest.raises(ValueError, match="32 lowercase hexadecimal"):
        verp_address(notification_id, BOUNCE_DOMAIN)


@pytest.mark.parametrize("domain", ["", "a@b.example", "bad domain.example"])
def test_verp_address_refuses_a_domain_that_is_not_bare(domain: str) -> None:
    with pytest.raises(ValueError, match="bare domain"):
        verp_address(ID, domain)


@pytest.mark.parametrize(
    "address",
    [
        f"bounces+{ID}@other.example.com",
        f"bounces+{ID}@sub.{BOUNCE_DOMAIN}",
        f"bounces+{ID[:-1]}@{BOUNCE_DOMAIN}",
        f"bounces+{ID}0@{BOUNCE_DOMAIN}",
        f"bounces-{ID}@{BOUNCE_DOMAIN}",
        f"other+{ID}@{BOUNCE_DOMAIN}",
        f"bounces+{ID}+x@{BOUNCE_DOMAIN}",
        f"bounces@{BOUNCE_DOMAIN}",
        "",
        "not an address",
    ],
)
def test_an_address_that_is_not_our_verp_names_no_notification(address: str) -> None:
    assert notification_id_from(address, BOUNCE_DOMAIN) is None
