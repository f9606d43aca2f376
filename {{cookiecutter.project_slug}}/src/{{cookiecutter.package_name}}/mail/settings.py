"""`MailSettings`: every `MAIL_*` variable, the core's and each feature's, validated together.

The core (`core/settings.py`) holds the server, TLS, the sender, timeouts, the pool and retries;
sign-in, signing and the doctor each add their fields and checks (`problems()`), so one load names
every bad variable at once. A feature whose package is not installed stops the load with one line
naming the variable that turned it on and the `pip install` that fixes it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi_mail import ConnectionConfig

from .core.message import connection_config
from .doctor.settings import DoctorSettings
from .signin.settings import SigninSettings

__all__ = ["MailSettings"]


class MailSettings(SigninSettings, DoctorSettings):
    """How to reach, log in to and sign for the SMTP server, and how hard to try (`MAIL_*`, and `.env`).

    `MailSettings(_env_file="../.env")` reads another env file; keyword arguments override variables.
    """

    def connection_config(self, template_folder: Path | None = None) -> ConnectionConfig:
        """The same settings as a `fastapi_mail.ConnectionConfig`."""
        return connection_config(
            self,
            username=self.username,
            password=self.password,
            use_credentials=self.use_credentials,
            template_folder=template_folder,
        )
