"""Inbound provider webhooks: each provider's key or credentials, and the replay window (`WEBHOOK_*` variables)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ...mail.core.loading import EnvSettings

TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
CONFIGURATION_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")
SENDGRID_KEY_HINT = "paste the Verification Key of Mail Settings > Event Webhook (base64, starting MFkw)"


class WebhookSettings(EnvSettings):
    """What verifies each provider's `POST /webhooks/{provider}`; a provider without its key is refused (401)."""

    # a ValidationError's text must not carry the signing key or the Postmark password
    model_config = SettingsConfigDict(env_prefix="WEBHOOK_", hide_input_in_errors=True)

    replay_window: float = Field(
        default=300,
        ge=30,
        le=24 * 3600,
        description=(
            "Seconds a provider's signed timestamp stays acceptable, either way of this clock; older "
            "requests are refused as replays (401)."
        ),
    )
    fetch_timeout: float = Field(
        default=10,
        gt=0,
        le=60,
        description="Seconds allowed to fetch an SNS signing certificate or to confirm an SNS subscription.",
    )
    ses_topic_arns: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated SNS topic ARNs whose messages are accepted at /webhooks/ses; empty: any "
            "topic, which lets any AWS account post signed messages here, so set it."
        ),
    )
    ses_configuration_set: str = Field(
        default="",
        description=(
            "SES configuration set named in each message (X-SES-CONFIGURATION-SET); its SNS event "
            "destination publishes the notification id. Empty: the sending identity's default set."
        ),
    )
    sendgrid_public_key: str = Field(
        default="",
        description=(
            "SendGrid Signed Event Webhook verification key (base64, as Mail Settings > Event Webhook "
            "shows it); empty: /webhooks/sendgrid refuses every request."
        ),
    )
    mailgun_signing_key: SecretStr | None = Field(
        default=None,
        description=(
            "Mailgun HTTP webhook signing key (Sending > Webhooks); never printed or logged; empty: "
            "/webhooks/mailgun refuses every request."
        ),
    )
    postmark_username: SecretStr | None = Field(
        default=None,
        description=(
            "User name of the basic auth in the Postmark webhook URL (https://USER:PASSWORD@host/webhooks/postmark); "
            "with WEBHOOK_POSTMARK_PASSWORD."
        ),
    )
    postmark_password: SecretStr | None = Field(
        default=None,
        description="Password of that basic auth; never printed or logged; empty: /webhooks/postmark refuses every request.",
    )

    @field_validator("ses_topic_arns", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(topic.strip() for topic in value.split(",") if topic.strip())
        return value

    @field_validator("ses_topic_arns")
    @classmethod
    def _check_topics(cls, topics: tuple[str, ...]) -> tuple[str, ...]:
        if not all(TOPIC_ARN.fullmatch(topic) for topic in topics):
            raise ValueError("list topic ARNs such as arn:aws:sns:us-east-1:123456789012:ses-events")
        return topics

    @field_validator("ses_configuration_set")
    @classmethod
    def _check_configuration_set(cls, name: str) -> str:
        if name and not CONFIGURATION_SET.fullmatch(name):
            raise ValueError("a configuration set name has 1 to 64 letters, digits, '-' or '_'")
        return name

    @field_validator("sendgrid_public_key")
    @classmethod
    def _check_sendgrid_key(cls, key: str) -> str:
        if key:
            sendgrid_public_key(key)
        return key

    @model_validator(mode="after")
    def _postmark_both_or_neither(self) -> WebhookSettings:
        if (self.postmark_username is None) != (self.postmark_password is None):
            raise ValueError(
                "WEBHOOK_POSTMARK_USERNAME and WEBHOOK_POSTMARK_PASSWORD: set both (the basic auth in the "
                "Postmark webhook URL) or neither"
            )
        return self


def sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key from its base64 DER text (PEM armour tolerated); ValueError if it is not one."""
    lines = [line.strip() for line in text.strip().splitlines() if not line.startswith("-----")]
    try:
        key = load_der_public_key(base64.b64decode("".join(lines), validate=True))
    except (binascii.Error, ValueError):
        raise ValueError(f"not a base64 public key; {SENDGRID_KEY_HINT}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"not an ECDSA P-256 key; {SENDGRID_KEY_HINT}")
    return key
