"""API_RATE_LIMIT: each key has its own window, shared by every API process; 429 with Retry-After over it."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.ratelimit.api import key_fingerprint

from .conftest import API_KEY, ROTATED_API_KEY, auth, service
from .smtp_server import SmtpServer

NOTIFICATION = {"to": ["alice@example.com"], "subject": "Report", "body": "Hello"}


def test_one_key_over_its_limit_gets_429_while_another_is_unaffected(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, API_RATE_LIMIT="3/minute") as client:
        answers = [client.get("/notifications", headers=auth()).status_code for _ in range(3)]
        refused = client.get("/notifications", headers=auth())
        other = client.get("/notifications", headers=auth(ROTATED_API_KEY))
    assert answers == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("too many requests for this API key (API_RATE_LIMIT 3/minute)")
    assert API_KEY not in refused.text
    assert other.status_code == 200


def test_a_post_over_the_limit_is_refused_and_nothing_is_queued(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, API_RATE_LIMIT="1/hour") as client:
        first = client.post("/notifications", json=NOTIFICATION, headers=auth())
        second = client.post("/notifications", json=NOTIFICATION, headers=auth())
        listed = client.get("/notifications", headers=auth(ROTATED_API_KEY)).json()["items"]
    assert (first.status_code, second.status_code) == (202, 429)
    assert [item["id"] for item in listed] == [first.json()["id"]]


def test_health_and_metrics_are_never_limited(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, API_RATE_LIMIT="1/hour") as client:
        assert client.get("/notifications", headers=auth()).status_code == 200
        assert client.get("/notifications", headers=auth()).status_code == 429
        answers = {
            path: client.get(path, headers=auth()).status_code
            for path in ("/health", "/health/ready", "/metrics")
        }
    assert answers == {"/health": 200, "/health/ready": 200, "/metrics": 200}


def test_requests_without_a_valid_key_are_left_to_authentication(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, API_RATE_LIMIT="1/hour") as client:
        wrong = [
            client.get("/notifications", headers=auth("wrong-key-0123456789")).status_code for _ in range(3)
        ]
        missing = client.get("/notifications").status_code
        mine = client.get("/notifications", headers=auth()).status_code
    assert wrong == [401, 401, 401]
    assert (missing, mine) == (401, 200)


def test_the_limit_is_shared_by_the_processes_of_one_store(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two apps on one store, as two uvicorn workers: what one counts, the other sees."""
    with (
        service(monkeypatch, API_RATE_LIMIT="3/minute") as first,
        service(monkeypatch, API_RATE_LIMIT="3/minute") as second,
    ):
        answers = [
            client.get("/notifications", headers=auth()).status_code
            for client in (first, second, first, second)
        ]
    assert answers == [200, 200, 200, 429]


def sample(metrics: str, series: str) -> float:
    """The value of `series` (name and labels, as exposed) in a scrape; 0 when absent."""
    found = [line for line in metrics.splitlines() if line.startswith(series + " ")]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def test_refusals_are_counted_by_key_fingerprint_never_by_key(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fingerprint = key_fingerprint(API_KEY)
    refused = 'api_rate_limited_total{key="' + fingerprint + '"}'
    received = 'notifications_received_total{outcome="rate_limited"}'
    with service(monkeypatch, API_RATE_LIMIT="1/hour") as client:
        before = client.get("/metrics", headers=auth(ROTATED_API_KEY)).text
        client.post("/notifications", json=NOTIFICATION, headers=auth())
        client.post("/notifications", json=NOTIFICATION, headers=auth())
        client.get("/notifications", headers=auth())
        after = client.get("/metrics", headers=auth(ROTATED_API_KEY)).text
    assert len(fingerprint) == 16
    assert sample(after, refused) == sample(before, refused) + 2
    assert sample(after, received) == sample(before, received) + 1
    assert API_KEY not in after
