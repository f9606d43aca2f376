"""Sending email over SMTP with fastapi-mail messages: settings, a pooled mailer, and a doctor that explains failures.

Copy this folder into any FastAPI app: it imports nothing else from the service. Password login
needs only fastapi-mail, aiosmtplib, pydantic and pydantic-settings; OAuth2 (authlib), DKIM
(dkimpy) and the deliverability check (dnspython) import their packages only when turned on
(`extras.py`). Inside: `core/` sends (settings, messages, sessions, the pool), `signin/` logs in,
`signing/` signs with DKIM, `doctor/` diagnoses (check-mail, /health/mail); `providers.py` is what
the package knows about mail providers.
"""

from .core.errors import DeliveryOutcomeUnknownError, MailError, PermanentMailError, TransientMailError
from .core.events import MailEvents
from .core.loading import SettingsError, load_settings
from .core.mailer import DeliveryResult, MailerClosedError
from .core.message import NOTIFICATION_ID_HEADER
from .core.parts import Attachment
from .core.transaction import MessageTooLargeError
from .mailer import Mailer
from .settings import MailSettings

__all__ = [
    "NOTIFICATION_ID_HEADER",
    "Attachment",
    "DeliveryOutcomeUnknownError",
    "DeliveryResult",
    "MailError",
    "MailEvents",
    "MailSettings",
    "Mailer",
    "MailerClosedError",
    "MessageTooLargeError",
    "PermanentMailError",
    "SettingsError",
    "TransientMailError",
    "load_settings",
]
