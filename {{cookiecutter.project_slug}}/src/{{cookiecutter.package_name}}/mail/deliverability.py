"""`check-mail --deliverability`: the DNS records that decide whether mail from MAIL_FROM's domain
reaches the inbox (SPF, DKIM, DMARC, MX and the provider's own records), judged one by one.

Each check gives a `Verdict`: a status, what was found in plain words, and the fix. A lookup that
fails (timeout, SERVFAIL, no answer from the resolver) is reported as a DNS failure, never as a
bad record; after one timeout the remaining lookups fail at once, so the check stays bounded.
The resolver is the system's, or MAIL_DNS_SERVER (`host` or `host:port`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import dkim
import dns.exception
import dns.resolver

from .diagnosis import Diagnosis, render_diagnosis, settings_diagnosis
from .probe import probe
from .settings import MailSettings, SettingsError, is_loopback, load_settings

__all__ = [
    "DeliverabilityReport",
    "Dns",
    "DnsLookupError",
    "Status",
    "Verdict",
    "check_deliverability",
    "deliverability_report",
    "provider_of",
]

DNS_TIMEOUT = 5.0
"""Seconds allowed for one lookup (MAIL_TIMEOUT when it is shorter)."""

SPF_LOOKUP_LIMIT = 10

PROVIDER_SPF_INCLUDES = {
    "sendgrid": "sendgrid.net",
    "ses": "amazonses.com",
    "office365": "spf.protection.outlook.com",
    "gmail": "_spf.google.com",
    "mailgun": "mailgun.org",
    "postmark": "spf.mtasv.net",
}
"""The include: that authorizes each provider's servers in SPF."""

_PROVIDER_HOSTS = (
    ("sendgrid", ("sendgrid.net",)),
    ("ses", ("amazonaws.com",)),
    ("office365", ("office365.com", "outlook.com")),
    ("gmail", ("gmail.com", "googlemail.com", "google.com")),
    ("mailgun", ("mailgun.org",)),
    ("postmark", ("postmarkapp.com",)),
)

_SPF_TERM = re.compile(
    r"(?P<qualifier>[-+~?]?)(?:(?P<mechanism>all|include|a|mx|ip4|ip6|exists|ptr)"
    r"(?::(?P<target>[^/\s]+))?(?P<cidr>(?:/\d{1,3}){0,2})|(?P<modifier>redirect|exp|[a-z][a-z0-9_.-]*)=(?P<value>\S*))",
    re.IGNORECASE,
)


class Status(StrEnum):
    """How a record stands."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    PROBLEM = "problem"
    DNS_FAILURE = "dns_failure"


@dataclass(frozen=True)
class Verdict:
    """One record's verdict: `message` says what was found, `fix` what to change."""

    record: str
    status: Status
    message: str
    fix: str = ""


class DnsLookupError(Exception):
    """A lookup that got no usable answer: the record's state is unknown."""


class Dns:
    """Bounded lookups; None for a name or record that does not exist."""

    def __init__(self, server: str = "", timeout: float = DNS_TIMEOUT) -> None:
        if server:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "53")
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = int(port)
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout
        self._dead = ""

    def lookup(self, name: str, kind: str) -> list[Any] | None:
        """The records of type `kind` at `name`; None when there are none; raises `DnsLookupError`."""
        if self._dead:
            raise DnsLookupError(self._dead)
        try:
            return list(self._resolver.resolve(name, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.Timeout:
            self._dead = f"the resolver did not answer within {self._resolver.lifetime:g} s"
            raise DnsLookupError(f"looking up {kind} {name}: {self._dead}") from None
        except (dns.resolver.NoNameservers, dns.exception.DNSException) as error:
            raise DnsLookupError(f"looking up {kind} {name} failed ({type(error).__name__})") from None

    def txt(self, name: str) -> list[str]:
        """The TXT strings at `name` (each record's strings joined), empty when there are none."""
        return [
            b"".join(record.strings).decode("utf-8", "replace") for record in self.lookup(name, "TXT") or []
        ]

    def addresses(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The A and AAAA addresses of `name`."""
        found = [ipaddress.ip_address(record.address) for record in self.lookup(name, "A") or []]
        return found + [ipaddress.ip_address(record.address) for record in self.lookup(name, "AAAA") or []]


def provider_of(server: str) -> str:
    """The provider preset that MAIL_SERVER belongs to: sendgrid, ses, ..., local or custom."""
    host = server.lower().rstrip(".")
    if is_loopback(host):
        return "local"
    for provider, domains in _PROVIDER_HOSTS:
        if any(host == domain or host.endswith("." + domain) for domain in domains):
            return provider
    return "custom"


def check_deliverability(settings: MailSettings, dns_client: Dns | None = None) -> list[Verdict]:
    """The verdicts on MAIL_FROM's domain: SPF, DKIM, DMARC, MX, then provider notes."""
    resolver = dns_client or Dns(settings.dns_server, min(DNS_TIMEOUT, settings.timeout))
    domain = str(settings.from_address).rpartition("@")[2].lower()
    provider = provider_of(settings.server)
    checks: tuple[tuple[str, Callable[[], Verdict | None]], ...] = (
        ("SPF", lambda: check_spf(resolver, domain, provider, settings.server)),
        ("DKIM", lambda: check_dkim(resolver, settings, provider)),
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


def spf_records(resolver: Dns, domain: str) -> list[str]:
    """The SPF records (TXT starting with v=spf1) at `domain`."""
    return [text for text in resolver.txt(domain) if text.lower().split(" ", 1)[0] == "v=spf1"]


@dataclass
class _SpfWalk:
    """What an SPF record authorizes, with its includes resolved."""

    lookups: int = 0
    includes: set[str] = field(default_factory=set)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    error: str = ""


def _walk_spf(resolver: Dns, domain: str, record: str, walk: _SpfWalk, depth: int = 0) -> None:
    """Follow `record` (of `domain`): count DNS lookups, collect includes and networks."""
    for term in record.split()[1:]:
        match = _SPF_TERM.fullmatch(term)
        if match is None:
            walk.error = walk.error or f"'{term}' in the record of {domain} is not an SPF term"
            continue
        mechanism = (match["mechanism"] or "").lower()
        modifier = (match["modifier"] or "").lower()
        target = match["target"] or match["value"] or domain
        if mechanism in {"include", "a", "mx", "ptr", "exists"} or modifier == "redirect":
            walk.lookups += 1
        if mechanism in {"ip4", "ip6"}:
            try:
                walk.networks.append(ipaddress.ip_network(target + match["cidr"], strict=False))
            except ValueError:
                walk.error = walk.error or f"'{term}' in the record of {domain} is not a valid address"
        elif mechanism == "a" and match["qualifier"] in {"", "+"}:
            walk.networks.extend(ipaddress.ip_network(address) for address in resolver.addresses(target))
        elif mechanism == "mx" and match["qualifier"] in {"", "+"}:
            for exchange in resolver.lookup(target, "MX") or []:
                hosts = resolver.addresses(str(exchange.exchange))
                walk.networks.extend(ipaddress.ip_network(address) for address in hosts)
        elif mechanism in {"include"} or modifier == "redirect":
            walk.includes.add(target.lower().rstrip("."))
            if depth < SPF_LOOKUP_LIMIT and walk.lookups <= SPF_LOOKUP_LIMIT:
                included = spf_records(resolver, target)
                if len(included) == 1:
                    _walk_spf(resolver, target, included[0], walk, depth + 1)
                else:
                    walk.error = (
                        walk.error or f"{target}, included by {domain}, has {len(included)} SPF records"
                    )


def check_spf(resolver: Dns, domain: str, provider: str, server: str) -> Verdict:
    """SPF: one valid record that authorizes the provider (or MAIL_SERVER's addresses)."""
    records = spf_records(resolver, domain)
    if not records:
        include = PROVIDER_SPF_INCLUDES.get(provider)
        mechanism = f"include:{include}" if include else "ip4:<your server's address>"
        return Verdict(
            "SPF",
            Status.PROBLEM,
            f"{domain} has no SPF record: receivers cannot tell which servers may send its mail",
            f'publish TXT {domain} "v=spf1 {mechanism} ~all"',
        )
    if len(records) > 1:
        return Verdict(
            "SPF",
            Status.PROBLEM,
            f"{domain} has {len(records)} SPF records; more than one makes SPF fail (permerror) everywhere",
            "merge them into one TXT record starting with v=spf1",
        )
    walk = _SpfWalk()
    _walk_spf(resolver, domain, records[0], walk)
    if walk.error:
        return Verdict(
            "SPF", Status.PROBLEM, f"the SPF record of {domain} is broken: {walk.error}", "correct the record"
        )
    if walk.lookups > SPF_LOOKUP_LIMIT:
        return Verdict(
            "SPF",
            Status.PROBLEM,
            f"the SPF record of {domain} needs {walk.lookups} DNS lookups; over {SPF_LOOKUP_LIMIT} SPF fails (permerror)",
            "remove includes you no longer use, or replace some with ip4:/ip6: ranges",
        )
    include = PROVIDER_SPF_INCLUDES.get(provider)
    if include is not None:
        if include in walk.includes:
            return Verdict(
                "SPF", Status.OK, f"{domain} has one SPF record; it authorizes {provider} (include:{include})"
            )
        return Verdict(
            "SPF",
            Status.PROBLEM,
            f"the SPF record of {domain} does not authorize {provider}: include:{include} is missing",
            f"add include:{include} before the all term",
        )
    if provider == "local":
        return Verdict(
            "SPF", Status.INFO, f"{domain} has one SPF record; MAIL_SERVER is a local server, not judged"
        )
    try:
        addresses = [ipaddress.ip_address(server.strip("[]"))]
    except ValueError:
        addresses = resolver.addresses(server)
    if any(address in network for address in addresses for network in walk.networks):
        return Verdict("SPF", Status.OK, f"{domain} has one SPF record; it authorizes {server}'s address")
    shown = ", ".join(str(address) for address in addresses) or "no address"
    return Verdict(
        "SPF",
        Status.WARNING,
        f"the SPF record of {domain} does not list {server} ({shown}) by address",
        "add ip4:/ip6: terms for the addresses your mail server sends from (or its provider's include:)",
    )


def check_dkim(resolver: Dns, settings: MailSettings, provider: str) -> Verdict:
    """DKIM: the selector's key is published and matches the key this service signs with."""
    signer = settings.dkim_signer
    if signer is None:
        if provider in {"local", "custom"}:
            return Verdict(
                "DKIM",
                Status.WARNING,
                "this service does not sign (MAIL_DKIM_DOMAIN unset); unless your server signs, mail has no DKIM",
                "run dkim-keygen, publish the record it prints and set MAIL_DKIM_DOMAIN, MAIL_DKIM_SELECTOR "
                "and MAIL_DKIM_PRIVATE_KEY_FILE",
            )
        return Verdict(
            "DKIM",
            Status.INFO,
            f"this service does not sign (MAIL_DKIM_DOMAIN unset); {provider} signs when domain authentication is set up",
            f"publish the DKIM records {provider}'s dashboard gives for your domain",
        )
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


def check_dmarc(resolver: Dns, domain: str, settings: MailSettings, provider: str) -> Verdict:
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
    signer = settings.dkim_signer
    if signer is not None and not _aligned(domain, signer.domain, tags.get("adkim") == "s"):
        return Verdict(
            "DMARC",
            Status.PROBLEM,
            f"DKIM d={signer.domain} does not align with From {domain} under adkim=s",
            f"set MAIL_DKIM_DOMAIN={domain}, or relax the record to adkim=r",
        )
    spf_aligned = provider in {"local", "custom"}  # own MTA: the envelope sender is MAIL_FROM
    if signer is None and not spf_aligned:
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


def render_verdicts(domain: str, verdicts: list[Verdict]) -> str:
    """The verdicts for people: one line each, and the fix under each that needs one."""
    lines = [f"deliverability of {domain}:"]
    for verdict in verdicts:
        lines.append(f"  {verdict.record:<8} {verdict.status.value.upper()}: {verdict.message}")
        if verdict.fix and verdict.status not in {Status.OK, Status.INFO}:
            lines.append(f"  {'':<8} fix: {verdict.fix}")
    return "\n".join(lines)


def deliverability_exit_code(verdicts: list[Verdict]) -> int:
    """0 when nothing stands in the way, 50 for a record to fix, 51 when DNS lookups failed."""
    if any(verdict.status is Status.PROBLEM for verdict in verdicts):
        return 50
    if any(verdict.status is Status.DNS_FAILURE for verdict in verdicts):
        return 51
    return 0


@dataclass(frozen=True)
class DeliverabilityReport:
    """`check-mail --deliverability`'s findings: the SMTP probe's diagnosis, then the DNS verdicts."""

    diagnosis: Diagnosis
    domain: str = ""
    verdicts: tuple[Verdict, ...] = ()

    @property
    def exit_code(self) -> int:
        """The probe's code when it failed, else 50 for a record to fix, 51 for DNS failures."""
        return self.diagnosis.exit_code or deliverability_exit_code(list(self.verdicts))

    def render(self, json_output: bool = False) -> str:
        """The report as check-mail prints it: JSON (verdicts under "deliverability"), or lines for people."""
        if not self.domain:  # the settings did not load: there is nothing to look up
            return render_diagnosis(self.diagnosis, json_output)
        if json_output:
            section = {"domain": self.domain, "verdicts": [asdict(verdict) for verdict in self.verdicts]}
            return json.dumps({**self.diagnosis.as_dict(), "deliverability": section})
        return render_diagnosis(self.diagnosis) + "\n" + render_verdicts(self.domain, list(self.verdicts))


def deliverability_report() -> DeliverabilityReport:
    """Probe the SMTP server of MailSettings from the environment, then judge MAIL_FROM's domain's records."""
    try:
        settings = load_settings(MailSettings)
    except SettingsError as error:
        return DeliverabilityReport(settings_diagnosis(error))
    diagnosis = asyncio.run(probe(settings))
    domain = str(settings.from_address).rpartition("@")[2].lower()
    return DeliverabilityReport(diagnosis, domain, tuple(check_deliverability(settings)))
