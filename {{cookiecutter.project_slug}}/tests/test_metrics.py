"""GET /metrics, scraped and parsed with prometheus-client's own parser, after real sends.

Real parts throughout: the service, the test SMTP server with injected faults, the store{% if cookiecutter.delivery == "celery" %},
the Celery worker{% endif %}; the multiprocess test runs uvicorn with two worker processes{% if cookiecutter.delivery == "celery" %} and a
`celery worker` process on a redis-server{% endif %}, sharing one PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import pytest
import trustme
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.devsmtp import free_port
from {{ cookiecutter.package_name }}.observability.metrics import received_outcome
from {{ cookiecutter.package_name }}.store import StoreSettings

{% if cookiecutter.delivery == "celery" -%}
from .celery_worker import running_redis, worker_command, worker_environment
{% endif -%}
from .conftest import API_KEY, ROTATED_API_KEY, auth, migrate, service
from .service_process import ServiceProcess
from .smtp_server import SmtpServer
from .test_outbox import wait_for_status

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Client = TestClient | httpx.Client

GOOD = {"to": ["alice@example.com"], "subject": "Metrics", "body": "Counted."}
REFUSED = {"to": ["nobody@example.com"], "subject": "Metrics", "body": "Refused with 550."}


def scrape(client: Client, key: str = API_KEY) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    response = client.get("/metrics", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def growth(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def scrape_until(client: Client, done: Callable[[Samples], bool], timeout: float = 15) -> Samples:
    """Scrape until `done` (a count is recorded just after the status it counts); return that scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(client)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("the metrics did not reach the expected values in time")
        time.sleep(0.05)


def post(client: Client, notification: Mapping[str, object]) -> str:
    response = client.post("/notifications", json=notification, headers=auth())
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_counters_are_exact_after_sends_refusals_and_a_retry(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.refused.update({"nobody@example.com", "nobody2@example.com"})
    settings = {"MAIL_MAX_RETRIES": "0", "DELIVERY_RETRY_BACKOFF": "0.2", "DELIVERY_POLL_INTERVAL": "0.1"}
    with service(monkeypatch, **settings) as client:
        before = scrape(client)
        smtp_server.handler.data_replies.append("451 4.3.0 try again later")
        retried = post(client, GOOD)
        wait_for_status(client, retried, "sent")
        # two addresses: a 550 5.1.1 suppresses its address, so a second notification to it is not sent
        refused = [post(client, REFUSED), post(client, REFUSED | {"to": ["nobody2@example.com"]})]
        ids = [post(client, GOOD) for _ in range(10)] + refused
        for notification_id in ids:
            wait_for_status(client, notification_id, "sent", "failed")
        after = scrape_until(
            client,
            lambda now: growth(before, now, "notifications_delivery_outcomes_total", outcome="sent") >= 11,
        )

    def grew(name: str, **labels: str) -> float:
        return growth(before, after, name, **labels)

    assert grew("notifications_received_total", outcome="queued") == 13
    assert grew("http_requests_total", method="POST", route="/notifications", status="202") == 13
    assert grew("notifications_delivery_attempts_total", result="2xx") == 11
    assert grew("notifications_delivery_attempts_total", result="5xx") == 2
    assert grew("notifications_delivery_attempts_total", result="4xx") == 1
    assert grew("notifications_delivery_outcomes_total", outcome="sent") == 11
    assert grew("notifications_delivery_outcomes_total", outcome="failed") == 2
    assert grew("notifications_delivery_outcomes_total", outcome="retried") == 1
    assert grew("notifications_delivery_latency_seconds_count") == 11
    assert grew("smtp_transaction_duration_seconds_count", result="2xx") == 11
    assert grew("smtp_transaction_duration_seconds_count", result="5xx") == 2
    assert grew("smtp_transaction_duration_seconds_count", result="4xx") == 1
    assert value(after, "smtp_sessions_in_use") == 0
    assert value(after, "notifications_backlog", status="queued") == 0
    assert value(after, "notifications_backlog", status="retrying") == 0
    assert value(after, "notifications_oldest_due_age_seconds") == 0
    # Routes are labelled by template; no label carries an id or an address.
    lookup = {"method": "GET", "route": "/notifications/{notification_id}", "status": "200"}
    assert grew("http_requests_total", **lookup) > 0
    labels = {label for _, pairs in after for _, label in pairs}
    assert not any(notification_id in label for notification_id in [retried, *ids] for label in labels)
    assert not any("@" in label for label in labels)


@pytest.mark.parametrize("step", ["connect", "tls", "auth"])
def test_failures_before_the_transaction_are_counted_by_step(
    step: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    broken = {
        "connect": {"MAIL_PORT": str(free_port())},  # nothing listens there
        "tls": {"MAIL_CERT_BUNDLE": str(other_ca)},  # the server's certificate is not trusted
        "auth": {"MAIL_PASSWORD": "not-the-password-0123"},
    }[step]
    with service(monkeypatch, MAIL_MAX_RETRIES="0", DELIVERY_MAX_ATTEMPTS="1", **broken) as client:
        before = scrape(client)
        wait_for_status(client, post(client, GOOD), "failed")
        after = scrape_until(
            client,
            lambda now: growth(before, now, "notifications_delivery_outcomes_total", outcome="failed") >= 1,
        )

    assert growth(before, after, "notifications_delivery_attempts_total", result=step) == 1
    assert growth(before, after, "notifications_delivery_attempts_total", result="2xx") == 0
    assert growth(before, after, "smtp_transaction_duration_seconds_count", result=step) == 0  # none began


def test_each_answer_to_a_new_notification_is_counted_by_outcome(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service(monkeypatch, MAX_REQUEST_BYTES="1024") as client:
        before = scrape(client)
        key = {"Idempotency-Key": "metrics-repeat"}
        first = client.post("/notifications", json=GOOD, headers={**auth(), **key})
        repeat = client.post("/notifications", json=GOOD, headers={**auth(), **key})
        invalid = client.post("/notifications", json={**GOOD, "to": ["not an address"]}, headers=auth())
        unauthorized = client.post("/notifications", json=GOOD)
        too_large = client.post("/notifications", json={**GOOD, "body": "x" * 2000}, headers=auth())
        unknown = client.get("/no/such/path/42")
        wait_for_status(client, first.json()["id"], "sent")
        after = scrape(client)

    answers = [first, repeat, invalid, unauthorized, too_large, unknown]
    assert [answer.status_code for answer in answers] == [202, 202, 422, 401, 413, 404]
    for outcome in ("queued", "idempotent_repeat", "invalid", "unauthorized", "over_limit"):
        assert growth(before, after, "notifications_received_total", outcome=outcome) == 1, outcome
    for status in ("401", "413", "422"):
        labels = {"method": "POST", "route": "/notifications", "status": status}
        assert growth(before, after, "http_requests_total", **labels) == 1, status
    assert value(after, "http_requests_total", method="GET", route="unmatched", status="404") >= 1


def test_methods_outside_the_standard_set_share_one_label(client: TestClient) -> None:
    for method in ("BREW", "PROPFIND", "X-ANY-TOKEN", "get"):
        client.request(method, "/health")
    samples = scrape(client)

    methods = {dict(pairs)["method"] for name, pairs in samples if name == "http_requests_total"}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert sum(count for (name, pairs), count in samples.items() if ("method", "other") in pairs) >= 4


def test_metrics_are_not_public(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth("wrong-key-0123456789abc")).status_code == 401
    assert client.get("/metrics", headers={"Authorization": API_KEY}).status_code == 401
    assert value(scrape(client, ROTATED_API_KEY), "notifications_backlog", status="queued") == 0


def test_disabled_metrics_have_no_route_and_count_nothing(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def counted() -> list[float | None]:
        return [
            REGISTRY.get_sample_value("notifications_received_total", {"outcome": "queued"}),
            REGISTRY.get_sample_value("notifications_delivery_outcomes_total", {"outcome": "sent"}),
            REGISTRY.get_sample_value("smtp_transaction_duration_seconds_count", {"result": "2xx"}),
            REGISTRY.get_sample_value(
                "http_requests_total", {"method": "POST", "route": "/notifications", "status": "202"}
            ),
        ]

    before = counted()
    with service(monkeypatch, METRICS_ENABLED="false") as client:
        assert client.get("/metrics", headers=auth()).status_code == 404
        wait_for_status(client, post(client, GOOD), "sent")
    smtp_server.handler.wait_for(1)

    assert counted() == before


def test_backlog_gauges_show_what_waits_and_for_how_long(
    database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first end of DATA is held long enough to be seen, even on a busy machine.
    smtp_server.handler.delay = 5.0
    with service(monkeypatch, DELIVERY_CONCURRENCY="1", MAIL_POOL_SIZE="1") as client:
        before = scrape(client)
        ids = [post(client, GOOD) for _ in range(3)]
        waiting = scrape_until(  # the first one is in its transaction
            client,
            lambda now: (
                value(now, "notifications_backlog", status="sending") == 1
                and growth(before, now, "smtp_sessions_in_use") == 1
            ),
            timeout=4,
        )
        smtp_server.handler.delay = 0  # the next ones go at once
        for notification_id in ids:
            wait_for_status(client, notification_id, "sent")
        drained = scrape(client)

    assert value(waiting, "notifications_backlog", status="queued") == 2
    assert growth(before, drained, "smtp_sessions_in_use") == 0
    assert growth(before, drained, "smtp_sessions_open") == 1  # MAIL_POOL_SIZE, kept for the next message
    assert value(waiting, "notifications_oldest_due_age_seconds") > 0
    assert value(drained, "notifications_backlog", status="queued") == 0
    assert value(drained, "notifications_backlog", status="sending") == 0
    assert value(drained, "notifications_oldest_due_age_seconds") == 0


def test_a_missing_multiprocess_folder_stops_start_up_in_one_line(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    migrate(StoreSettings().database_url)
    missing = tmp_path / "missing"
    service = ServiceProcess(tmp_path / "service.log", PROMETHEUS_MULTIPROC_DIR=str(missing))
    with pytest.raises(AssertionError, match="the service exited"):
        service.start()

    assert service.process is not None
    assert service.process.returncode == 2
    [line] = (tmp_path / "service.log").read_text().strip().splitlines()
    assert line == (
        f"error: invalid settings: PROMETHEUS_MULTIPROC_DIR ({missing}) is not a writable folder: "
        "create it, empty and shared by every process of the service, or unset it for one process"
    )


def test_make_dev_prints_the_metrics_url_and_it_answers(tmp_path: Path) -> None:
    port, smtp_port = free_port(), free_port()
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "dev", "--dir", str(tmp_path / "dev")]
    command += ["--port", str(port), "--smtp-port", str(smtp_port)]
    environment = {**os.environ, "API_KEYS": API_KEY, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as dev:
        try:
            assert dev.stdout is not None
            banner = "".join(dev.stdout.readline().decode() for _ in range(2))  # after the store's line
            [url] = re.findall(r"metrics (http://\S+)", banner)
            assert url == f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = httpx.get(url, headers=auth(), timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "make dev did not answer"
                    time.sleep(0.1)
            assert answer.status_code == 200
            assert "notifications_backlog" in answer.text
        finally:
            dev.terminate()
            dev.wait(30)


def receivers(folder: Path) -> set[str]:
    """The processes whose multiprocess files counted a queued notification."""
    found = set()
    for path in folder.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):  # type: ignore[no-untyped-call]
            if any(s.labels == {"outcome": "queued"} and s.value > 0 for s in metric.samples):
                found.add(path.stem.removeprefix("counter_"))
    return found


def test_one_scrape_sums_every_process_sharing_the_multiprocess_folder(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    migrate(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
{%- if cookiecutter.delivery == "celery" %}
    with running_redis(tmp_path) as broker:
        monkeypatch.setenv("CELERY_BROKER_URL", broker)
        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                worker_command("--concurrency", "2", "--without-mingle", "--without-gossip"),
                env=worker_environment(),
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            sent, samples = send_until_both_workers_counted(folder, tmp_path)
        finally:
            worker.terminate()
            worker.wait(30)
{%- else %}
    sent, samples = send_until_both_workers_counted(folder, tmp_path)
{%- endif %}

    assert value(samples, "notifications_received_total", outcome="queued") == sent
    assert value(samples, "notifications_delivery_outcomes_total", outcome="sent") == sent
    assert value(samples, "notifications_delivery_latency_seconds_count") == sent
    assert value(samples, "notifications_backlog", status="queued") == 0
    assert not list(folder.glob("gauge_live*.db")), "a process that ended left its live gauges"


def send_until_both_workers_counted(folder: Path, tmp_path: Path) -> tuple[int, Samples]:
    """Through `uvicorn --workers 2`, POST on fresh connections until both workers counted one;
    wait until all are sent and return how many, with one scrape of the whole service."""
    ids: list[str] = []
    with ServiceProcess(tmp_path / "service.log", workers=2) as api:
        while len(receivers(folder)) < 2:
            assert len(ids) < 200, "one uvicorn worker answered every request"
            with httpx.Client(base_url=api.url) as fresh:  # a new connection: the kernel picks the worker
                ids.append(post(fresh, GOOD))
        with httpx.Client(base_url=api.url) as client:
            for notification_id in ids:
                wait_for_status(client, notification_id, "sent")
            samples = scrape_until(
                client,
                lambda now: value(now, "notifications_delivery_outcomes_total", outcome="sent") >= len(ids),
            )
    return len(ids), samples


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (202, "queued"),
        (422, "invalid"),
        (401, "unauthorized"),
        (429, "unauthorized"),
        (413, "over_limit"),
        (408, "over_limit"),
        (503, "over_limit"),
        (500, "error"),
    ],
)
def test_each_refusal_of_a_post_counts_as_what_it_is(status: int, outcome: str) -> None:
    assert received_outcome(status, {"type": "http"}) == outcome
