"""`POST /webhooks/{provider}` on an app that provides the webhooks and an event sink, as the service does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest
import trustme
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.api import webhooks as route
from {{ cookiecutter.package_name }}.api.auth import Authenticator
from {{ cookiecutter.package_name }}.api.limits import RequestLimits
from {{ cookiecutter.package_name }}.feedback.events import DeliveryEvent, EventType
from {{ cookiecutter.package_name }}.feedback.webhooks import Webhooks, WebhookSettings, tracking_headers
from {{ cookiecutter.package_name }}.mail import SettingsError
from {{ cookiecutter.package_name }}.mail.core.loading import load_settings
from {{ cookiecutter.package_name }}.settings import ApiSettings

from .conftest import API_KEY
from .sns_server import SnsServer, running_sns

pytestmark = pytest.mark.anyio

SIGNING_KEY = secrets.token_hex(16)
POSTMARK_PASSWORD = secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsServer]:
    with running_sns(trustme.CA()) as server:
        yield server


@pytest.fixture
async def app(
    sns: SnsServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, list[DeliveryEvent]]]:
    """The route on an app whose sink collects the events, behind the service's RequestLimits (body size and
    time limits, keys on authenticated paths); Mailgun and Postmark are configured."""
    monkeypatch.setenv("WEBHOOK_MAILGUN_SIGNING_KEY", SIGNING_KEY)
    monkeypatch.setenv("WEBHOOK_POSTMARK_USERNAME", "postmark")
    monkeypatch.setenv("WEBHOOK_POSTMARK_PASSWORD", POSTMARK_PASSWORD)
    collected: list[DeliveryEvent] = []

    async def sink(events: Sequence[DeliveryEvent]) -> None:
        collected.extend(events)

    monkeypatch.setenv("API_KEYS", API_KEY)
    api = ApiSettings()
    application = FastAPI()
    application.add_middleware(
        RequestLimits, settings=api, authenticator=Authenticator(api), openapi=application.openapi
    )
    application.include_router(route.router)
    async with sns.client() as sns_client:
        application.state.webhooks = Webhooks(WebhookSettings(), sns_client)
        application.state.webhook_events = sink
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client, collected


def mailgun_body(event: str = "failed") -> dict[str, object]:
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    digest = hmac.new(SIGNING_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    variables = json.loads(tracking_headers("mailgun", "n1", WebhookSettings())["X-Mailgun-Variables"])
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": digest},
        "event-data": {
            "event": event,
            "id": "event-1",
            "timestamp": time.time(),
            "recipient": "alice@example.com",
            "severity": "permanent",
            "delivery-status": {"code": 550, "message": "550 5.1.1 no such user"},
            "user-variables": variables,
        },
    }


async def test_verified_events_reach_the_sink(app: tuple[httpx.AsyncClient, list[DeliveryEvent]]) -> None:
    client, collected = app
    response = await client.post("/webhooks/mailgun", json=mailgun_body())
    assert (response.status_code, response.json()) == (200, {"events": 1})
    [event] = collected
    assert (event.type, event.recipient, event.notification_id, event.status) == (
        EventType.BOUNCED,
        "alice@example.com",
        "n1",
        "5.1.1",
    )


async def test_an_event_not_about_delivery_is_answered_200_with_nothing(
    app: tuple[httpx.AsyncClient, list[DeliveryEvent]],
) -> None:
    client, collected = app
    response = await client.post("/webhooks/mailgun", json=mailgun_body("opened"))
    assert (response.status_code, response.json(), collected) == (200, {"events": 0}, [])


async def test_a_refused_signature_is_401_and_reaches_no_sink(
    app: tuple[httpx.AsyncClient, list[DeliveryEvent]],
) -> None:
    client, collected = app
    body = mailgun_body()
    body["signature"]["signature"] = "0" * 64  # type: ignore[index]
    response = await client.post("/webhooks/mailgun", json=body)
    assert response.status_code == 401
    assert "does not verify" in response.json()["detail"]
    assert SIGNING_KEY not in response.text
    assert collected == []


async def test_basic_auth_refusals_carry_a_challenge(
    app: tuple[httpx.AsyncClient, list[DeliveryEvent]],
) -> None:
    client, _ = app
    response = await client.post("/webhooks/postmark", json={}, auth=("postmark", "wrong"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_a_malformed_body_is_400(app: tuple[httpx.AsyncClient, list[DeliveryEvent]]) -> None:
    client, _ = app
    response = await client.post(
        "/webhooks/postmark", content=b"not json", auth=("postmark", POSTMARK_PASSWORD)
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("postmark: not a Postmark record")


async def test_an_unknown_provider_is_404(app: tuple[httpx.AsyncClient, list[DeliveryEvent]]) -> None:
    client, _ = app
    response = await client.post("/webhooks/gmail", json={})
    assert response.status_code == 404
    assert "ses, sendgrid, mailgun, postmark" in response.json()["detail"]


async def test_an_sns_subscription_is_confirmed(
    app: tuple[httpx.AsyncClient, list[DeliveryEvent]], sns: SnsServer
) -> None:
    client, collected = app
    envelope = sns.subscription_confirmation()
    response = await client.post("/webhooks/ses", content=sns.sign(envelope, "2"))
    assert (response.status_code, response.json(), collected) == (200, {"events": 0}, [])
    assert envelope["SubscribeURL"].endswith(sns.requests[-1].removeprefix("/"))
    assert sns.requests[-1].startswith("/?Action=ConfirmSubscription&")


async def test_a_certificate_that_cannot_be_fetched_is_503_to_retry(
    app: tuple[httpx.AsyncClient, list[DeliveryEvent]], sns: SnsServer
) -> None:
    """A genuine SNS host that does not answer (here: another region, unreachable): SNS should retry."""
    client, _ = app
    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0.pem"
    body = sns.sign(sns.notification({"eventType": "Delivery"}, SigningCertURL=url))
    response = await client.post("/webhooks/ses", content=body)
    assert (response.status_code, response.headers["retry-after"]) == (503, "60")


def test_settings_errors_name_the_variable_and_never_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_POSTMARK_PASSWORD", POSTMARK_PASSWORD)
    monkeypatch.setenv("WEBHOOK_SENDGRID_PUBLIC_KEY", base64.b64encode(b"not a key").decode())
    monkeypatch.setenv("WEBHOOK_SES_TOPIC_ARNS", "ses-events")
    with pytest.raises(SettingsError) as failure:
        load_settings(WebhookSettings)
    message = str(failure.value)
    assert "\n" not in message
    assert "WEBHOOK_SENDGRID_PUBLIC_KEY: not a base64 public key" in message
    assert "WEBHOOK_SES_TOPIC_ARNS: list topic ARNs" in message
    assert POSTMARK_PASSWORD not in message


def test_postmark_credentials_come_in_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_POSTMARK_USERNAME", "postmark")
    with pytest.raises(
        SettingsError, match="WEBHOOK_POSTMARK_USERNAME and WEBHOOK_POSTMARK_PASSWORD: set both"
    ):
        load_settings(WebhookSettings)


def test_a_notification_id_no_provider_can_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="1 to 128 letters"):
        tracking_headers("mailgun", "a b", WebhookSettings())
    assert tracking_headers("office365", "n1", WebhookSettings()) == {}
    assert tracking_headers(None, "n1", WebhookSettings()) == {}


async def test_no_api_key_is_asked_and_the_request_size_limit_holds(
    app: tuple[httpx.AsyncClient, list[DeliveryEvent]],
) -> None:
    """Providers send no bearer key; RequestLimits still bounds the body (MAX_REQUEST_BYTES)."""
    client, _ = app
    limit = ApiSettings().max_request_bytes
    response = await client.post("/webhooks/mailgun", content=b"x" * (limit + 1))
    assert response.status_code == 413
    response = await client.post("/webhooks/mailgun", json=mailgun_body())
    assert response.status_code == 200
