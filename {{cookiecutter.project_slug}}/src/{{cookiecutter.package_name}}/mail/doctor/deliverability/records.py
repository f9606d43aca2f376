"""DKIM, DMARC, MX and the provider's own records of MAIL_FROM's domain, judged one by one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dkim  # type: ignore[import-untyped]  # dkimpy ships no types

from ..settings import DoctorSettings
from .dns import Dns
from .verdict import Status, Verdict

if TYPE_CHECKING:
    from ...signing.dkim import DkimSigner

__all__ = [
    "check_dkim",
    "check_dmarc",
    "check_mx",
    "check_provider",
    "check_unsigned",
    "organizational_domain",
]


def check_unsigned(provider: str) -> Verdict:
    """DKIM when this service does not sign: the provider may, your own server may not."""
    if provider in {"local", "custom"}:
        return Verdict(
            "DKIM",
            Status.WARNING,
            "this service does not sign (MAIL_DKIM_DOMAIN unset); unless your server signs, mail has no DKIM",
            "run dkim-keygen (an RSA key, and an Ed25519 one beside it), publish the records it prints and set "
            "MAIL_DKIM_DOMAIN, MAIL_DKIM_SELECTOR and MAIL_DKIM_PRIVATE_KEY_FILE",
        )
    return Verdict(
        "DKIM",
        Status.INFO,
        f"this service does not sign (MAIL_DKIM_DOMAIN unset); {provider} signs when domain authentication is set up",
        f"publish the DKIM records {provider}'s dashboard gives for your domain",
    )


def check_dkim(resolver: Dns, settings: DoctorSettings, signer: DkimSigner) -> Verdict:
    """DKIM for one of the service's keys: its selector's record is published and matches the key."""
    texts = [text for text in resolver.txt(signer.record_name) if "p=" in text]
    publish = f'publish TXT {signer.record_name} "{signer.dns_record()}"'
    if not texts:
        return Verdict("DKIM", Status.PROBLEM, f"no DKIM key is published at {signer.record_name}", publish)
    if len(texts) > 1:
        return Verdict(
            "DKIM",
            Status.PROBLEM,
            f"{signer.record_name} has {len(texts)} DKIM records",
            "keep exactly one: " + publish,
        )
    probe = (
        f"From: {settings.from_address}\r\nTo: {settings.from_address}\r\nSubject: DKIM check\r\n"
        f"Message-ID: <dkim-check@{signer.domain}>\r\n\r\nsigned by check-mail\r\n"
    ).encode()

    def published(name: bytes, timeout: float = 5) -> bytes:
        return texts[0].encode()

    try:
        verified = bool(dkim.verify(signer.sign(probe), dnsfunc=published))
    except dkim.DKIMException:
        verified = False
    if not verified:
        return Verdict(
            "DKIM",
            Status.PROBLEM,
            f"the key at {signer.record_name} does not verify a message signed with the private key in use",
            "replace the record with the one for this key: " + publish,
        )
    return Verdict("DKIM", Status.OK, f"{signer.record_name} publishes the key this service signs with")


def organizational_domain(domain: str) -> str:
    """The domain's last two labels (no public-suffix list: good enough for example.com, not co.uk)."""
    return ".".join(domain.split(".")[-2:])


def _aligned(author: str, other: str, strict: bool) -> bool:
    if strict:
        return author == other
    return organizational_domain(author) == organizational_domain(other)


def check_dmarc(resolver: Dns, domain: str, settings: DoctorSettings, provider: str) -> Verdict:
    """DMARC: one record with a policy, and From aligned with a domain that SPF or DKIM vouches for."""
    name = f"_dmarc.{domain}"
    records = [text for text in resolver.txt(name) if text.lower().startswith("v=dmarc1")]
    if not records and organizational_domain(domain) != domain:
        name = f"_dmarc.{organizational_domain(domain)}"
        records = [text for text in resolver.txt(name) if text.lower().startswith("v=dmarc1")]
    if not records:
        return Verdict(
            "DMARC",
            Status.PROBLEM,
            f"{domain} has no DMARC record; Gmail, Yahoo and Microsoft require one from bulk senders",
            f'publish TXT _dmarc.{domain} "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"',
        )
    if len(records) > 1:
        return Verdict(
            "DMARC",
            Status.PROBLEM,
            f"{name} has {len(records)} DMARC records; receivers ignore them all",
            "keep one",
        )
    tags = {
        key.strip().lower(): value.strip().lower()
        for key, _, value in (part.partition("=") for part in records[0].split(";") if part.strip())
    }
    policy = tags.get("p", "")
    if policy not in {"none", "quarantine", "reject"}:
        return Verdict(
            "DMARC",
            Status.PROBLEM,
            f"the DMARC record at {name} has no valid policy (p=none, quarantine or reject)",
            f'publish TXT {name} "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"',
        )
    signing = settings.dkim_signers[0].domain if settings.dkim_signers else None
    if signing is not None and not _aligned(domain, signing, tags.get("adkim") == "s"):
        return Verdict(
            "DMARC",
            Status.PROBLEM,
            f"DKIM d={signing} does not align with From {domain} under adkim=s",
            f"set MAIL_DKIM_DOMAIN={domain}, or relax the record to adkim=r",
        )
    spf_aligned = provider in {"local", "custom"}  # own MTA: the envelope sender is MAIL_FROM
    if signing is None and not spf_aligned:
        alignment = (
            f"{provider} sends with its own bounce domain, so only a DKIM signature for {domain} aligns: "
            f"set up {provider}'s domain authentication (or MAIL_DKIM_*)"
        )
        return Verdict(
            "DMARC", Status.WARNING, f"DMARC p={policy} at {name}; {alignment}", "see the DKIM line"
        )
    if policy == "none":
        return Verdict(
            "DMARC",
            Status.WARNING,
            f"DMARC at {name} is p=none: receivers report but do not act on failures",
            "once the reports show your mail passing, move to p=quarantine, then p=reject",
        )
    return Verdict("DMARC", Status.OK, f"DMARC at {name}: p={policy}, From aligned with SPF or DKIM")


def check_mx(resolver: Dns, domain: str) -> Verdict:
    """MX: the sending domain can receive bounces and replies."""
    records = resolver.lookup(domain, "MX")
    hosts = sorted(str(record.exchange).rstrip(".") for record in records or [])
    if not hosts or hosts == [""]:
        return Verdict(
            "MX",
            Status.WARNING,
            f"{domain} has no MX record: bounces and replies have nowhere to go, and some receivers refuse such senders",
            f"publish MX {domain} pointing at a server that accepts mail for it",
        )
    return Verdict("MX", Status.OK, f"{domain} receives mail at {', '.join(hosts)}")


def check_provider(resolver: Dns, domain: str, provider: str) -> Verdict | None:
    """What the provider needs besides SPF: SendGrid's CNAMEs, SES's verified identity."""
    if provider == "sendgrid":
        missing = [
            f"{selector}._domainkey.{domain}"
            for selector in ("s1", "s2")
            if resolver.lookup(f"{selector}._domainkey.{domain}", "CNAME") is None
        ]
        if missing:
            return Verdict(
                "provider",
                Status.WARNING,
                f"SendGrid domain authentication is not set up: no CNAME at {', '.join(missing)}",
                "SendGrid > Settings > Sender Authentication > Authenticate Your Domain; publish the CNAMEs it shows",
            )
        return Verdict("provider", Status.OK, "SendGrid domain authentication CNAMEs (s1, s2) are published")
    if provider == "ses":
        return Verdict(
            "provider",
            Status.INFO,
            f"SES sends only from a verified identity: {domain} (or MAIL_FROM) must be verified in the region of MAIL_SERVER",
            "SES console > Identities > Create identity (domain), then publish its three Easy DKIM CNAMEs",
        )
    return None
