"""Real bounce messages (tests/data/bounces/) and the notifications they are about.

- postfix-bounce.eml: Postfix 3.7's own DSN (text/plain, message/delivery-status, text/rfc822-headers),
  sent to the VERP address of POSTFIX_BOUNCE_ID: nobody@example.org 5.1.1, full@example.net 5.2.2.
- postfix-delay.eml: Postfix's "Delayed Mail (still being retried)" for POSTFIX_DELAY_ID: slow@example.net 4.4.1.
- exchange-online-ndr.eml: an Exchange Online NDR (text and HTML explanation, message/delivery-status,
  message/rfc822) for a message sent without VERP: only its Message-ID names EXCHANGE_ID.
- qmail-bounce.eml: an old-style text bounce (no DSN) to the VERP address of QMAIL_ID: left@example.net.
- unrelated.eml: a person's message, no bounce.
"""

from __future__ import annotations

from pathlib import Path

from {{ cookiecutter.package_name }}.notifications import message_id

SAMPLES = Path(__file__).parent / "data" / "bounces"
BOUNCE_DOMAIN = "bounce.example.com"
POSTFIX_BOUNCE_ID = "5f0c7a1e9b2d4c3a8e6f1b0d2c4a6e8f"
POSTFIX_DELAY_ID = "7e2b9c4d1a3f4e5b9c8d7a6b5c4d3e2f"
EXCHANGE_ID = "9a8b7c6d5e4f40312a1b2c3d4e5f6071"
QMAIL_ID = "3c5e7a9b1d2f4608a0c2e4b6d8f0a1c3"
SENDER = "noreply@example.com"


def sent_message_id(notification_id: str) -> str:
    """The Message-ID the service gave the notification (sent from SENDER), as the bounces return it."""
    return message_id(notification_id, SENDER)


def sample(name: str) -> bytes:
    """The bytes of tests/data/bounces/`name`.eml."""
    return (SAMPLES / f"{name}.eml").read_bytes()
