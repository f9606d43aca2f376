"""`Mailer`: the core's pooled SMTP mailer, logging in and signing as `MailSettings` say."""

from __future__ import annotations

from .core.events import MailEvents
from .core.mailer import SmtpMailer
from .settings import MailSettings
from .signin.login import login_for

__all__ = ["Mailer"]


class Mailer(SmtpMailer):
    """Sends `fastapi_mail.MessageSchema` messages over up to MAIL_POOL_SIZE pooled SMTP sessions.

    `async with Mailer(settings) as mailer: await mailer.send(message)`; `send_many` sends a batch.
    `events` hears about its sessions, transactions and token requests (see `MailEvents`).
    """

    def __init__(self, settings: MailSettings, events: MailEvents | None = None) -> None:
        super().__init__(
            settings, login=login_for(settings, events), sign=settings.dkim_sign(), events=events
        )
