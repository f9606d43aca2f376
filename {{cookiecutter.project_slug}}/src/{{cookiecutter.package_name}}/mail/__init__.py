"""Sending email over SMTP with fastapi-mail messages: settings, a pooled mailer, diagnoses.

This package imports nothing else from the service, only fastapi-mail, aiosmtplib,
pydantic and pydantic-settings (and, for DKIM and the deliverability check, dkimpy,
cryptography and dnspython): copy the folder into any FastAPI app.
"""

from .errors import MailError, PermanentMailError, TransientMailError
from .mailer import DeliveryResult, Mailer
from .settings import MailSettings, SettingsError, load_settings

__all__ = [
    "DeliveryResult",
    "MailError",
    "MailSettings",
    "Mailer",
    "PermanentMailError",
    "SettingsError",
    "TransientMailError",
    "load_settings",
]
