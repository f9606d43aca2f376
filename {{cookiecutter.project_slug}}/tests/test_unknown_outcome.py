"""A message whose end of DATA got no reply is sent once more, never lost and never sent a third time.

The real SMTP server (STARTTLS, AUTH) cuts the connection after the end of DATA, or never answers it,
and keeps nothing it did not answer, as Postfix does when it stops mid-send.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from .conftest import auth, service
from .smtp_server import SmtpServer
from .test_outbox import NOTIFICATION, wait_for_status

FAST = {"MAIL_DATA_TIMEOUT": "0.5", "DELIVERY_RETRY_BACKOFF": "0.2", "DELIVERY_POLL_INTERVAL": "0.1"}
"""A short wait for the reply to the end of DATA, and quick retries from the store."""


def outcomes(answer: dict[str, object]) -> list[object]:
    attempts = answer["attempts"]
    assert isinstance(attempts, list)
    return [attempt["outcome"] for attempt in attempts]


@pytest.mark.parametrize("fault", ["drop", "stall"])
def test_an_unknown_outcome_is_sent_once_more_with_the_same_message_id(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    smtp_server.handler.data_faults.append(fault)
    with service(monkeypatch, **FAST) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        sent = wait_for_status(client, notification_id, "sent")

    first, second = sent["attempts"]
    assert outcomes(sent) == ["outcome_unknown", "sent"]
    assert ("MAIL_DATA_TIMEOUT" if fault == "stall" else "the connection was lost") in first["reply"]
    assert second["reply"].startswith("250 ")
    [received] = smtp_server.received
    assert received.message["Message-ID"] == f"<{notification_id}@example.com>"
    assert smtp_server.handler.data_faults == []


def test_a_second_unknown_outcome_fails_the_notification_with_both_attempts(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_faults.extend(["drop", "drop"])
    with service(monkeypatch, **FAST) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        failed = wait_for_status(client, notification_id, "failed")
        time.sleep(0.5)  # several poll intervals: no third send
        again = client.get(f"/notifications/{notification_id}", headers=auth()).json()

    assert outcomes(again) == ["outcome_unknown", "outcome_unknown"]
    assert "2 attempts had an unknown outcome: another could deliver it a third time" in failed["last_error"]
    assert smtp_server.handler.data_faults == []  # both messages went out to their end of DATA
    assert smtp_server.received == []


def test_at_most_once_when_unknown_outcomes_are_not_retried(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.data_faults.append("drop")
    with service(monkeypatch, DELIVERY_RETRY_UNKNOWN_OUTCOME="false", **FAST) as client:
        notification_id = client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"]
        failed = wait_for_status(client, notification_id, "failed")
        time.sleep(0.5)  # a retry would go through: the server has no fault left
        again = client.get(f"/notifications/{notification_id}", headers=auth()).json()

    assert outcomes(again) == ["outcome_unknown"]
    assert "DELIVERY_RETRY_UNKNOWN_OUTCOME=false" in failed["last_error"]
    assert smtp_server.received == []


def test_a_restart_of_the_smtp_server_mid_send_loses_nothing_and_sends_none_more_than_twice(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.delay = 0.5  # the server holds each message half a second before its final reply
    backoff = {
        "DELIVERY_RETRY_BACKOFF": "0.3",
        "DELIVERY_RETRY_BACKOFF_MAX": "1",
        "DELIVERY_POLL_INTERVAL": "0.1",
    }
    with service(monkeypatch, **backoff) as client:
        ids = [
            client.post("/notifications", json=NOTIFICATION, headers=auth()).json()["id"] for _ in range(12)
        ]
        smtp_server.handler.wait_for(2)
        smtp_server.handler.wait_held(1)
        smtp_server.restart(pause=1.0)
        answers = [wait_for_status(client, each, "sent", timeout=60) for each in ids]

    arrived = Counter(str(received.message["X-Notification-ID"]) for received in smtp_server.received)
    assert set(arrived) == set(ids)
    assert max(arrived.values()) <= 2
    assert any("outcome_unknown" in outcomes(answer) for answer in answers)  # the restart cut a held message
