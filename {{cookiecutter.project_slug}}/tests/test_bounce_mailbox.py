"""The bounce mailbox, read from a real Dovecot over verified TLS: real DSNs in, events out, messages marked.

Each test gets a fresh folder of the one Dovecot user; the messages are put there with IMAP APPEND.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence

import pytest

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.feedback.bounces import (
    MATCHED,
    UNMATCHED,
    BouncePoller,
    BounceSettings,
    MailboxError,
    PollResult,
)
from {{ cookiecutter.package_name }}.feedback.bounces.poller import BATCH, HandlerError, retry_delay
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
from .dovecot import PASSWORD, DovecotServer

UNKNOWN_ID = "00112233445566778899aabbccddeeff"
BODIES = ("Your order 1042 has shipped", "Could you send my invoice again", "Welcome! Your account is ready")


class Notifications:
    """The integration's side, as the poller sees it: knows some notifications, records what it matched."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.message_ids = {sent_message_id(notification_id) for notification_id in ids}
        self.received: list[DeliveryEvent] = []
        self.matched: list[DeliveryEvent] = []
        self.failing: Exception | None = None

    async def handle(self, events: Sequence[DeliveryEvent]) -> Collection[DeliveryEvent]:
        if self.failing is not None:
            raise self.failing
        self.received.extend(events)
        matched = [
            event
            for event in events
            if event.notification_id in self.ids or event.message_id in self.message_ids
        ]
        self.matched.extend(matched)
        return matched


def settings_for(dovecot: DovecotServer, mailbox: str, **overrides: object) -> BounceSettings:
    values: dict[str, object] = {
        "domain": BOUNCE_DOMAIN,
        "imap_url": dovecot.url(mailbox),
        "imap_password": PASSWORD,
        "imap_ca_bundle": dovecot.ca_file,
        "imap_timeout": 10,
        **overrides,
    }
    return BounceSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> str:
    return dovecot.mailbox()


def test_reports_become_events_matched_by_verp_or_message_id_and_are_marked(
    dovecot: DovecotServer, mailbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unknown = sample("postfix-bounce").replace(POSTFIX_BOUNCE_ID.encode(), UNKNOWN_ID.encode())
    names = ["postfix-bounce", "exchange-online-ndr", "postfix-delay", "qmail-bounce", "unrelated"]
    uids = dict(zip([*names, "unknown"], dovecot.append(mailbox, *map(sample, names), unknown), strict=True))
    notifications = Notifications({POSTFIX_BOUNCE_ID, POSTFIX_DELAY_ID, EXCHANGE_ID, QMAIL_ID})
    poller = BouncePoller(settings_for(dovecot, mailbox), notifications.handle)

    result = asyncio.run(poller.poll())

    assert result == PollResult(messages=6, matched=4, more=False)
    matched = {event.recipient: event for event in notifications.matched}
    assert {
        recipient: (e.type, e.bounce, e.status, e.notification_id) for recipient, e in matched.items()
    } == {
        "nobody@example.org": (EventType.BOUNCED, BounceKind.HARD, "5.1.1", POSTFIX_BOUNCE_ID),
        "full@example.net": (EventType.BOUNCED, BounceKind.SOFT, "5.2.2", POSTFIX_BOUNCE_ID),
        "slow@example.net": (EventType.DEFERRED, None, "4.4.1", POSTFIX_DELAY_ID),
        "gone@contoso.com": (EventType.BOUNCED, BounceKind.HARD, "5.1.10", None),  # no VERP: by Message-ID
        "left@example.net": (EventType.BOUNCED, BounceKind.HARD, "", QMAIL_ID),  # a text bounce: no status
    }
    assert "User unknown in virtual mailbox table" in matched["nobody@example.org"].diagnostic
    assert "RESOLVER.ADR.RecipientNotFound" in matched["gone@contoso.com"].diagnostic
    assert matched["gone@contoso.com"].message_id == sent_message_id(EXCHANGE_ID)
    unmatched = [event for event in notifications.received if event not in notifications.matched]
    assert {event.notification_id for event in unmatched} == {UNKNOWN_ID}  # handed over; the handler said no

    flags = dovecot.flags(mailbox)
    assert set(flags) == set(uids.values()), "every message is still there"
    for name in ("postfix-bounce", "exchange-online-ndr", "postfix-delay", "qmail-bounce"):
        assert flags[uids[name]] == {"\\Seen", MATCHED}, name
    for name in ("unrelated", "unknown"):
        assert flags[uids[name]] == {UNMATCHED}, name  # kept unread for a person, never deleted

    received = len(notifications.received)
    assert asyncio.run(poller.poll()) == PollResult(messages=0, matched=0, more=False)
    assert len(notifications.received) == received, "a marked message is not read again"
    assert dovecot.flags(mailbox) == flags

    logged = caplog.text
    assert PASSWORD not in logged
    assert not [body for body in BODIES if body in logged]
    assert "matches no notification" in logged


def test_a_message_is_marked_only_after_the_handler_returned(dovecot: DovecotServer, mailbox: str) -> None:
    (uid,) = dovecot.append(mailbox, sample("postfix-bounce"))
    notifications = Notifications({POSTFIX_BOUNCE_ID})
    notifications.failing = RuntimeError("the store is down")
    poller = BouncePoller(settings_for(dovecot, mailbox), notifications.handle)

    with pytest.raises(
        HandlerError, match=r"handler failed on message \d+ \(RuntimeError: the store is down\)"
    ):
        asyncio.run(poller.poll())
    assert dovecot.flags(mailbox) == {uid: set()}, "left unread, to be read again"

    notifications.failing = None
    assert asyncio.run(poller.poll()) == PollResult(messages=1, matched=1, more=False)
    assert dovecot.flags(mailbox) == {uid: {"\\Seen", MATCHED}}


def test_plain_imap_reads_the_mailbox_on_loopback(dovecot: DovecotServer, mailbox: str) -> None:
    dovecot.append(mailbox, sample("postfix-delay"))
    notifications = Notifications({POSTFIX_DELAY_ID})
    settings = settings_for(dovecot, mailbox, imap_url=dovecot.url(mailbox, tls=False), imap_ca_bundle=None)
    assert settings.mailbox is not None
    assert not settings.mailbox.tls

    assert asyncio.run(BouncePoller(settings, notifications.handle).poll()) == PollResult(1, 1, more=False)


def test_a_full_batch_asks_for_another_look(dovecot: DovecotServer, mailbox: str) -> None:
    dovecot.append(mailbox, *[sample("unrelated")] * (BATCH + 1))
    poller = BouncePoller(settings_for(dovecot, mailbox), Notifications(set()).handle)

    assert asyncio.run(poller.poll()) == PollResult(messages=BATCH, matched=0, more=True)
    assert asyncio.run(poller.poll()) == PollResult(messages=1, matched=0, more=False)


def test_a_wrong_password_is_one_line_and_backs_off_until_stopped(
    dovecot: DovecotServer, mailbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-Test-Passw0rd"
    settings = settings_for(dovecot, mailbox, imap_password=wrong, poll_interval=0.01, retry_backoff_max=0.05)
    poller = BouncePoller(settings, Notifications(set()).handle)

    async def scenario() -> None:
        task = asyncio.create_task(poller.run())
        for _ in range(2000):  # bounded: at most 20 s of 10 ms looks
            if poller.failures >= 4 or task.done():
                break
            await asyncio.sleep(0.01)
        poller.stop()
        await asyncio.wait_for(task, timeout=30)  # returns (no exception): it never crashed

    asyncio.run(scenario())

    assert poller.failures >= 4
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) >= 4
    for line in warnings:
        assert "\n" not in line
        assert wrong not in line
        assert PASSWORD not in line
        assert line.startswith(f"bounce mailbox 127.0.0.1:{dovecot.port}: the login of bounces was refused")
        assert "([AUTHENTICATIONFAILED] Authentication failed.): check BOUNCE_IMAP_PASSWORD" in line
        assert "trying again in" in line


def test_retry_delay_doubles_from_the_poll_interval_up_to_the_cap(
    dovecot: DovecotServer, mailbox: str
) -> None:
    settings = settings_for(dovecot, mailbox, poll_interval=10, retry_backoff_max=300)

    for failures in range(1, 12):
        expected = 10 * 2 ** (failures - 1)
        delay = retry_delay(failures, settings)
        assert min(expected * 0.5, 300) <= delay <= min(expected * 1.5, 300)


def test_an_untrusted_certificate_is_refused(dovecot: DovecotServer, mailbox: str) -> None:
    """Without BOUNCE_IMAP_CA_BUNDLE the test CA is unknown: the error says what to set."""
    poller = BouncePoller(settings_for(dovecot, mailbox, imap_ca_bundle=None), Notifications(set()).handle)

    with pytest.raises(MailboxError) as raised:
        asyncio.run(poller.poll())

    assert f"bounce mailbox 127.0.0.1:{dovecot.port}: cannot connect (certificate not trusted" in str(
        raised.value
    )
    assert "set BOUNCE_IMAP_CA_BUNDLE" in str(raised.value)


def test_a_server_that_is_down_is_one_line_naming_the_url(dovecot: DovecotServer) -> None:
    settings = settings_for(dovecot, "INBOX", imap_url=f"imaps://bounces@127.0.0.1:{free_port()}/INBOX")
    poller = BouncePoller(settings, Notifications(set()).handle)

    with pytest.raises(MailboxError) as raised:
        asyncio.run(poller.poll())

    assert str(raised.value).startswith("bounce mailbox 127.0.0.1:")
    assert "cannot connect (Connection refused): check the host and port of BOUNCE_IMAP_URL" in str(
        raised.value
    )


def test_a_missing_mailbox_is_named(dovecot: DovecotServer) -> None:
    poller = BouncePoller(settings_for(dovecot, "No-Such-Folder"), Notifications(set()).handle)

    with pytest.raises(
        MailboxError, match=r"cannot open the mailbox No-Such-Folder.*check the path of BOUNCE_IMAP_URL"
    ):
        asyncio.run(poller.poll())


def test_run_reads_what_arrives_and_stops_cleanly(dovecot: DovecotServer, mailbox: str) -> None:
    notifications = Notifications({POSTFIX_DELAY_ID})
    poller = BouncePoller(settings_for(dovecot, mailbox, poll_interval=0.05), notifications.handle)

    async def scenario() -> None:
        task = asyncio.create_task(poller.run())
        await asyncio.to_thread(dovecot.append, mailbox, sample("postfix-delay"))
        for _ in range(2000):  # bounded: at most 20 s
            if notifications.received:
                break
            await asyncio.sleep(0.01)
        poller.stop()
        await asyncio.wait_for(task, timeout=30)

    asyncio.run(scenario())

    assert [event.recipient for event in notifications.received] == ["slow@example.net"]
    assert list(dovecot.flags(mailbox).values()) == [{"\\Seen", MATCHED}]
    assert poller.failures == 0


def test_a_poller_needs_a_mailbox() -> None:
    with pytest.raises(ValueError, match="BOUNCE_IMAP_URL is not set"):
        BouncePoller(BounceSettings(), Notifications(set()).handle)
