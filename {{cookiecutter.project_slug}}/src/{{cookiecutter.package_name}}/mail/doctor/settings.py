"""The doctor's settings: the resolver `check-mail --deliverability` asks (`MAIL_DNS_SERVER`)."""

from __future__ import annotations

from pydantic import Field

from ..signing.settings import SigningSettings

__all__ = ["DoctorSettings"]


class DoctorSettings(SigningSettings):
    """`SigningSettings` (the deliverability check verifies each DKIM key) plus the resolver to use."""

    dns_server: str = Field(
        default="",
        description="Resolver for `check-mail --deliverability`, as host or host:port. Empty: the system's.",
    )
