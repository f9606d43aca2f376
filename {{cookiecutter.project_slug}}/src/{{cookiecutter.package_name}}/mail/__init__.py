"""Sending email over SMTP with fastapi-mail messages: settings, a pooled mailer, diagnoses.

This package imports nothing else from the service, only fastapi-mail, aiosmtplib,
pydantic and pydantic-settings (and authlib, httpx and cryptography for OAuth2 sign-in;
dkimpy and dnspython for DKIM and the deliverability check): copy the folder into any FastAPI app.
"""

from .errors import DeliveryOutcomeUnknownError, MailError, PermanentMailError, TransientMailError
from .events import MailEvents
from .mailer import DeliveryResult, Mailer, MailerClosedError
from .settings import MailSettings, SettingsError, load_settings

__all__ = [
    "DeliveryOutcomeUnknownError",
    "DeliveryResult",
    "MailError",
    "MailEvents",
    "MailSettings",
    "Mailer",
    "MailerClosedError",
    "PermanentMailError",
    "SettingsError",
    "TransientMailError",
    "load_settings",
]
