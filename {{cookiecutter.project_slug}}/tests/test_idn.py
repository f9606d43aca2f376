"""International domains through the API, to real servers with and without SMTPUTF8.

An ASCII local part on an IDN domain goes out as the A-label in the envelope and the headers alike
(IDNA 2008 with UTS 46 non-transitional mapping, so "straße.de" stays itself), needing no SMTPUTF8.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from .conftest import auth, service
from .smtp_server import running_server
from .test_outbox import wait_for_status

FAST = {"DELIVERY_POLL_INTERVAL": "0.1"}


@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8", "no-smtputf8"])
def test_an_idn_domain_with_an_ascii_local_part_goes_out_as_its_a_label(
    ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch, smtputf8: bool
) -> None:
    posted = {
        "to": ["alice@bücher.example", "user@straße.de"],
        "cc": ["bob@example.com"],
        "subject": "IDN",
        "body": "x",
    }
    with running_server(ca, ca_file, smtputf8=smtputf8) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        with service(monkeypatch, **FAST) as client:
            notification_id = client.post("/notifications", json=posted, headers=auth()).json()["id"]
            answer = wait_for_status(client, notification_id, "sent", "failed")
        [received] = server.handler.wait_for(1)

    assert answer["status"] == "sent", answer["last_error"]
    assert sorted(answer["accepted"]) == ["alice@bücher.example", "bob@example.com", "user@straße.de"]
    assert answer["pending"] == []
    assert received.recipients == ("alice@xn--bcher-kva.example", "user@xn--strae-oqa.de", "bob@example.com")
    assert [address.addr_spec for address in received.message["To"].addresses] == [
        "alice@xn--bcher-kva.example",
        "user@xn--strae-oqa.de",  # IDNA 2003 made it strasse.de, another domain
    ]
    assert received.data.isascii()


@pytest.mark.parametrize(
    ("smtputf8", "status"), [(True, "sent"), (False, "failed")], ids=["smtputf8", "no-smtputf8"]
)
def test_a_non_ascii_local_part_needs_smtputf8(
    ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch, smtputf8: bool, status: str
) -> None:
    posted = {"to": ["jörg@bücher.example"], "subject": "UTF-8", "body": "x"}
    with running_server(ca, ca_file, smtputf8=smtputf8) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        with service(monkeypatch, **FAST) as client:
            notification_id = client.post("/notifications", json=posted, headers=auth()).json()["id"]
            answer = wait_for_status(client, notification_id, "sent", "failed")

    assert answer["status"] == status, answer["last_error"]
    if status == "sent":
        [received] = server.received
        assert received.recipients == ("jörg@xn--bcher-kva.example",)
    else:
        assert "SMTPUTF8" in answer["last_error"]
        assert server.received == []
