"""The `Login` the settings ask for: none, a password, or an OAuth2 token (authlib imported only then)."""

from __future__ import annotations

from ..core.events import MailEvents
from ..core.session import Login
from .password import LoginGuard, PasswordLogin
from .settings import SigninSettings

__all__ = ["login_for"]


def login_for(
    settings: SigninSettings, events: MailEvents | None = None, *, cooldown: bool = True
) -> Login | None:
    """How sessions opened with `settings` log in; None when MAIL_USE_CREDENTIALS=false.

    `cooldown`: pause password logins for MAIL_LOGIN_COOLDOWN after a refused one (the Mailer; a
    one-off probe logs in once). `events` hears of OAuth2 token requests.
    """
    if not settings.use_credentials:
        return None
    if settings.auth == "xoauth2":
        from .oauth import XOAuth2Login

        return XOAuth2Login(settings, events)
    guard = LoginGuard(settings.login_cooldown if cooldown else 0.0, settings.secret_forms())
    return PasswordLogin(settings.username, settings.password.get_secret_value(), guard)
