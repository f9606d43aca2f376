"""SPF: one valid record, within ten DNS look-ups, that authorizes the provider or MAIL_SERVER's addresses."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ...providers import PROVIDERS
from .dns import Dns
from .verdict import Status, Verdict

__all__ = ["check_spf", "spf_include", "spf_records"]

SPF_LOOKUP_LIMIT = 10

_SPF_TERM = re.compile(
    r"(?P<qualifier>[-+~?]?)(?:(?P<mechanism>all|include|a|mx|ip4|ip6|exists|ptr)"
    r"(?::(?P<target>[^/\s]+))?(?P<cidr>(?:/\d{1,3}){0,2})|(?P<modifier>redirect|exp|[a-z][a-z0-9_.-]*)=(?P<value>\S*))",
    re.IGNORECASE,
)


def spf_include(provider: str) -> str | None:
    """The include: that authorizes the servers of `provider` (a preset name), if it has one."""
    return next((each.spf_include for each in PROVIDERS if each.name == provider), None)


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
        include = spf_include(provider)
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
    include = spf_include(provider)
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
