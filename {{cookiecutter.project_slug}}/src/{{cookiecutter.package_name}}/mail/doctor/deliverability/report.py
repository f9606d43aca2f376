"""`check-mail --deliverability`: the DNS records that decide whether mail from MAIL_FROM's domain reaches
the inbox (SPF, DKIM, DMARC, MX and the provider's own records), judged one by one.

Each check gives a `Verdict`. A lookup that fails (timeout, SERVFAIL, no answer from the resolver)
is reported as a DNS failure, never as a bad record. Needs the `deliverability` extra (dnspython).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ...core.settings import is_loopback
from ...providers import provider_of
from ..settings import DoctorSettings
from .dns import DNS_TIMEOUT, Dns, DnsLookupError
from .records import check_dkim, check_dmarc, check_mx, check_provider, check_unsigned
from .spf import check_spf
from .verdict import Status, Verdict

__all__ = ["check_deliverability", "provider_name"]


def provider_name(server: str) -> str:
    """The preset MAIL_SERVER belongs to: sendgrid, ses, ..., `local` (a loopback host) or `custom`."""
    if is_loopback(server.lower().rstrip(".")):
        return "local"
    provider = provider_of(server)
    return provider.name if provider is not None else "custom"


def check_deliverability(settings: DoctorSettings, dns_client: Dns | None = None) -> list[Verdict]:
    """The verdicts on MAIL_FROM's domain: SPF, DKIM (one per signing key), DMARC, MX, then provider notes."""
    resolver = dns_client or Dns(settings.dns_server, min(DNS_TIMEOUT, settings.timeout))
    domain = str(settings.from_address).rpartition("@")[2].lower()
    provider = provider_name(settings.server)
    dkim: list[Callable[[], Verdict | None]] = [
        functools.partial(check_dkim, resolver, settings, signer) for signer in settings.dkim_signers
    ]
    checks: tuple[tuple[str, Callable[[], Verdict | None]], ...] = (
        ("SPF", lambda: check_spf(resolver, domain, provider, settings.server)),
        *(("DKIM", check) for check in dkim or [lambda: check_unsigned(provider)]),  # each key's record
        ("DMARC", lambda: check_dmarc(resolver, domain, settings, provider)),
        ("MX", lambda: check_mx(resolver, domain)),
        ("provider", lambda: check_provider(resolver, domain, provider)),
    )
    verdicts: list[Verdict] = []
    for record, check in checks:
        try:
            verdict = check()
        except DnsLookupError as error:
            verdict = Verdict(
                record,
                Status.DNS_FAILURE,
                f"{record} not checked: {error}",
                "check the resolver (MAIL_DNS_SERVER, or the system's) and run the check again",
            )
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts
