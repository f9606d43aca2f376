"""Provider advice for a refused login: each large provider has its own convention (see `providers.py`)."""

from __future__ import annotations

from ..providers import provider_of

__all__ = ["login_advice"]

GENERIC_ADVICE = "check MAIL_USERNAME and MAIL_PASSWORD (the server rejected this pair)"


def login_advice(server: str, username: str) -> str:
    """What to check when `server` rejects the login of `username`: the provider's advice, else the generic one."""
    provider = provider_of(server)
    if provider is None:
        return GENERIC_ADVICE
    wrong = provider.username and username != provider.username
    return provider.login_advice.format(shown=f" (it is {username!r})" if wrong else "")
