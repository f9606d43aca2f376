"""Failed authentications are throttled per client address, on a real uvicorn; successful requests never are.

Each client comes from an address of its own through `X-Forwarded-For`, which uvicorn takes from
127.0.0.1 by default (`--forwarded-allow-ips`), as from a reverse proxy in front of the service.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from {{ cookiecutter.package_name }}.api.auth import FailureThrottle
from {{ cookiecutter.package_name }}.store import StoreSettings

from .conftest import API_KEY, auth, migrate
from .service_process import ServiceProcess
from .smtp_server import SmtpServer


def from_address(service: ServiceProcess, address: str) -> httpx.Client:
    """A client whose requests the service sees coming from `address`."""
    return httpx.Client(base_url=service.url, headers={"X-Forwarded-For": address})


def test_failed_authentications_from_one_address_get_429_until_the_window_passes(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    migrate(StoreSettings().database_url)
    with (
        ServiceProcess(tmp_path / "service.log", API_AUTH_FAILURES="3", API_AUTH_WINDOW="2") as service,
        from_address(service, "198.51.100.2") as guesser,
        from_address(service, "198.51.100.3") as neighbour,
    ):
        guesses = [guesser.get("/notifications", headers=auth(f"guess-{n}-Xk29PqLw7Rt3Zv")) for n in range(3)]
        throttled = guesser.post("/notifications", content=b"{}", headers=auth(API_KEY))  # not even checked
        metrics = guesser.get("/metrics", headers=auth(API_KEY))
        other = neighbour.get("/notifications", headers=auth(API_KEY))
        time.sleep(int(throttled.headers.get("Retry-After", "0")))
        after = guesser.get("/notifications", headers=auth(API_KEY))

    assert [guess.status_code for guess in guesses] == [401] * 3
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 2
    assert "API_AUTH_FAILURES" in throttled.json()["detail"]
    assert metrics.status_code == 429  # every authenticated route
    assert other.status_code == 200  # another address is not concerned
    assert after.status_code == 200  # the window has passed


def test_successful_requests_are_never_throttled(smtp_server: SmtpServer, tmp_path: Path) -> None:
    migrate(StoreSettings().database_url)
    with (
        ServiceProcess(tmp_path / "service.log", API_AUTH_FAILURES="2") as service,
        from_address(service, "198.51.100.4") as client,
    ):
        statuses = {client.get("/notifications", headers=auth()).status_code for _ in range(30)}
        statuses.add(client.get("/notifications", headers=auth("one-wrong-guess-Xk29PqLw7Rt")).status_code)
        statuses |= {client.get("/notifications", headers=auth()).status_code for _ in range(30)}

    assert statuses == {200, 401}


def test_the_addresses_tracked_are_bounded() -> None:
    throttle = FailureThrottle(limit=2, window=60, max_addresses=100)
    for n in range(5000):
        throttle.failed(f"198.51.{n // 256}.{n % 256}")
        throttle.failed(f"198.51.{n // 256}.{n % 256}")

    assert len(throttle) == 100
    assert throttle.retry_after("198.51.19.135") is not None  # the newest are kept
    assert throttle.retry_after("198.51.0.0") is None


def test_an_ipv6_client_counts_as_its_64_bit_prefix() -> None:
    throttle = FailureThrottle(limit=2, window=60, max_addresses=100)
    throttle.failed("2001:db8::1")
    throttle.failed("2001:db8::2:3")

    assert throttle.retry_after("2001:db8::ffff") is not None
    assert throttle.retry_after("2001:db8:0:1::1") is None
    assert throttle.retry_after("192.0.2.1") is None
